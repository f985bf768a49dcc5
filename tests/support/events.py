"""Event types used by kernel tests (and their child processes)."""

from __future__ import annotations

from pydantic import BaseModel

from backbone.bus.streams import EventType


class Ping(BaseModel):
    n: int


class Pong(BaseModel):
    n: int


Pinged = EventType("test", "pinged", 1, Ping)
Ponged = EventType("test", "ponged", 1, Pong)
