"""Request and response bodies of the users API.

Every request model forbids unknown fields (`extra="forbid"`): a misspelt or
unexpected field is a 422, never silently ignored. Usernames are `[a-z0-9_]`
only, 3-32 characters: no case folding and no Unicode, so there are no
look-alike names to normalise. E-mail addresses are matched case-insensitively
(stored lower-cased); the check is a deliberately plain ASCII shape check, the
real proof of an address being a confirmation mail this service does not send.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

USERNAME_PATTERN = r"^[a-z0-9_]{3,32}$"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL_PATTERN = rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$"

Username = Annotated[str, Field(min_length=3, max_length=32, pattern=USERNAME_PATTERN)]
Email = Annotated[
    str, Field(min_length=3, max_length=254, pattern=_EMAIL_PATTERN), AfterValidator(str.lower)
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(_Request):
    username: Username
    email: Email
    password: Annotated[str, Field(min_length=8, max_length=128)]


class TokenCreate(_Request):
    """Login: the password is not re-checked against the registration policy."""

    username: Annotated[str, Field(min_length=1, max_length=32)]
    password: Annotated[str, Field(min_length=1, max_length=128)]


class UserPublic(BaseModel):
    id: str
    username: str
    email: str


class TokenPublic(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int  # seconds
