"""Who is calling, decided at the edge: the bearer token verified against the users JWKS.

A token that is sent is always verified, on public routes too; a route that is not
public (`RouteSpec.public`, gateway/public_api.py) without a valid token is refused
by the proxy. Services verify the token again (the Authorization header is
forwarded); identity headers are never trusted.
"""

from __future__ import annotations

from backbone.auth import (
    Claims,
    InvalidToken,
    JwksCache,
    JwtVerifier,
    SigningKeysUnavailable,
    users_jwks_url,
)
from backbone.registry import Discovery
from gateway.config import GatewaySettings

__all__ = ["Authenticator", "InvalidToken", "SigningKeysUnavailable"]


class Authenticator:
    """auth = Authenticator(settings, discovery)

    claims = await auth.verify(token)   # raises InvalidToken
    """

    def __init__(self, settings: GatewaySettings, discovery: Discovery) -> None:
        self._settings = settings
        self._discovery = discovery
        # JwksCache refetches on an unknown kid (at most every few seconds): key rotation works.
        self._verifier = JwtVerifier(
            JwksCache(self._jwks_url), issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )

    def _jwks_url(self) -> str:
        return users_jwks_url(self._discovery, self._settings.jwks_url)

    async def verify(self, token: str) -> Claims:
        return await self._verifier.verify(token)
