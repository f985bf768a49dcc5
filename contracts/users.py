from __future__ import annotations

from datetime import datetime

from backbone.bus.streams import EventType
from contracts._base import EventData


class UserRegisteredData(EventData):
    """Never carries the password or its hash."""

    user_id: str
    username: str
    registered_at: datetime


class UserLoggedInData(EventData):
    user_id: str
    username: str


UserRegistered = EventType(
    "users", "user_registered", 1, UserRegisteredData, "A user account was created."
)
UserLoggedIn = EventType("users", "user_logged_in", 1, UserLoggedInData, "A user logged in.")
