"""Request and response bodies of the users API: the public ones, declared once in
contracts/api/users.py (the gateway documents the same models)."""

from __future__ import annotations

from contracts.api.users import (
    USERNAME_PATTERN,
    Email,
    TokenCreate,
    TokenPublic,
    UserCreate,
    Username,
    UserPublic,
)

__all__ = [
    "USERNAME_PATTERN",
    "Email",
    "TokenCreate",
    "TokenPublic",
    "UserCreate",
    "UserPublic",
    "Username",
]
