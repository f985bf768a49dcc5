"""The bearer credential of an `Authorization` header, and the challenge that asks for it.

One parser for the gateway and every service, so the edge and the services never
disagree on what counts as "a token was sent" (RFC 6750: scheme case-insensitive).
"""

from __future__ import annotations

REALM = "astratrade"


def bearer_token(header: str | None) -> str | None:
    """`"Bearer abc"` -> `"abc"`; anything else (other scheme, empty token) -> None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def challenge(error: str | None = None, *, realm: str = REALM) -> str:
    """The `WWW-Authenticate` value: `Bearer realm="astratrade"[, error="invalid_token"]`."""
    value = f'Bearer realm="{realm}"'
    return f'{value}, error="{error}"' if error else value
