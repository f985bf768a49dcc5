"""Who is calling, decided at the edge: the bearer token verified against the users JWKS.

A token that is sent is always verified, on public routes too; a non-public
route without a valid token is refused. Services verify the token again (the
Authorization header is forwarded); identity headers are never trusted.
"""

from __future__ import annotations

from collections.abc import Iterable

from backbone.auth import Claims, InvalidToken, JwksCache, JwtVerifier
from backbone.errors import RegistryError
from backbone.registry import Discovery
from gateway.config import GatewaySettings

__all__ = ["Authenticator", "InvalidToken", "bearer_token"]


def bearer_token(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class Authenticator:
    """auth = Authenticator(settings, discovery)

    auth.is_public("GET", "/api/v1/trading/markets/BTC-USD")   # True: below a public path
    claims = await auth.verify(token)                          # raises InvalidToken
    """

    def __init__(self, settings: GatewaySettings, discovery: Discovery) -> None:
        self._settings = settings
        self._discovery = discovery
        self._public = self.parse_routes(settings.public_routes)
        # JwksCache refetches on an unknown kid (at most every few seconds): key rotation works.
        self._verifier = JwtVerifier(
            JwksCache(self._jwks_url), issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )

    def _jwks_url(self) -> str:
        if self._settings.jwks_url:
            return self._settings.jwks_url
        instances = self._discovery.instances("users")
        if not instances:
            raise RegistryError("no ready users instance to fetch the JWKS from")
        return instances[0].url.rstrip("/") + "/.well-known/jwks.json"

    @staticmethod
    def parse_routes(routes: Iterable[str]) -> tuple[tuple[str, str], ...]:
        """("GET /api/v1/x/",) -> (("GET", "/api/v1/x"),)"""
        parsed = []
        for route in routes:
            method, _, path = route.strip().partition(" ")
            parsed.append((method.upper(), path.strip().rstrip("/")))
        return tuple(parsed)

    @staticmethod
    def matches(routes: Iterable[tuple[str, str]], method: str, path: str) -> bool:
        """Whether `method path` is one of `routes` or below one."""
        for route_method, prefix in routes:
            if method == route_method and (path == prefix or path.startswith(prefix + "/")):
                return True
        return False

    def is_public(self, method: str, path: str) -> bool:
        """`path` must be canonical (`public_api.canonical_path`), as the proxy passes it:
        on a raw path, `POST /x/` and `POST /x` could get different answers."""
        return self.matches(self._public, method, path)

    async def verify(self, token: str) -> Claims:
        return await self._verifier.verify(token)
