"""Who is calling: services verify the bearer token themselves, never a forwarded header.

The gateway verifies tokens too, but a service reachable on its own port must
not trust anything but a signature: `X-User-ID` and friends are ignored.

    @router.get("/portfolio")
    async def portfolio(user: CurrentUser) -> ...
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backbone.auth import (
    Claims,
    InvalidToken,
    JwtVerifier,
    SigningKeysUnavailable,
    bearer_token,
    challenge,
)
from backbone.service.problems import ProblemError


async def current_user(request: Request) -> Claims:
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise _unauthorized("A bearer token is required.")
    # The users service's JWKS, or what the spec's `verifier` gave (users: its own key).
    verifier: JwtVerifier = request.app.state.runtime.verifier
    try:
        return await verifier.verify(token)
    except InvalidToken as e:
        raise _unauthorized(f"Invalid token: {e}") from e
    except SigningKeysUnavailable as e:
        # The verifier's trouble, not the token's: a 401 would tell the client to log out.
        raise ProblemError(
            503, "Service Unavailable", f"Cannot verify tokens now: {e}",
            headers={"Retry-After": "1"},
        ) from e  # fmt: skip


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, "Unauthorized", detail, headers={"WWW-Authenticate": challenge()})


async def optional_user(request: Request) -> Claims | None:
    """Public routes: anonymous is fine, but a token that is sent must be valid."""
    if request.headers.get("authorization") is None:
        return None
    return await current_user(request)


CurrentUser = Annotated[Claims, Depends(current_user)]
OptionalUser = Annotated[Claims | None, Depends(optional_user)]
