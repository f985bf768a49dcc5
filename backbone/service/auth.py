"""Who is calling: services verify the bearer token themselves, never a forwarded header.

The gateway verifies tokens too, but a service reachable on its own port must
not trust anything but a signature: `X-User-ID` and friends are ignored.

    @router.get("/portfolio")
    async def portfolio(user: CurrentUser) -> ...
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backbone.auth import Claims, InvalidToken
from backbone.service.problems import ProblemError

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="astratrade"'}


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def current_user(request: Request) -> Claims:
    token = bearer_token(request)
    if token is None:
        raise ProblemError(401, "Unauthorized", "A bearer token is required.", headers=_CHALLENGE)
    try:
        return await request.app.state.runtime.verifier.verify(token)  # type: ignore[no-any-return]
    except InvalidToken as e:
        raise ProblemError(401, "Unauthorized", f"Invalid token: {e}", headers=_CHALLENGE) from e


async def optional_user(request: Request) -> Claims | None:
    """Public routes: anonymous is fine, but a token that is sent must be valid."""
    if request.headers.get("authorization") is None:
        return None
    return await current_user(request)


CurrentUser = Annotated[Claims, Depends(current_user)]
OptionalUser = Annotated[Claims | None, Depends(optional_user)]
