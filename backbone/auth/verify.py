"""Token verification with the algorithm pinned and every time/audience claim checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from backbone.auth.jwks import JwksCache, JwksFetchError
from backbone.errors import AstraError

ALGORITHMS = ("EdDSA",)
LEEWAY_SECONDS = 5


class InvalidToken(AstraError):
    """The bearer token is missing, malformed, expired, forged or not for us."""


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str
    username: str
    scopes: frozenset[str]
    raw: dict[str, Any]


class JwtVerifier:
    def __init__(self, jwks: JwksCache, *, issuer: str, audience: str) -> None:
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience

    async def verify(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise InvalidToken("malformed token") from e
        if header.get("alg") not in ALGORITHMS:
            raise InvalidToken(f"algorithm {header.get('alg')!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("token has no key id")
        try:
            key = await self._jwks.get(kid)
        except JwksFetchError as e:
            raise InvalidToken("signing keys unavailable") from e
        if key is None:
            raise InvalidToken("unknown signing key")
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=list(ALGORITHMS),
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "nbf", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as e:
            raise InvalidToken(str(e)) from e
        scope = claims.get("scope", "")
        return Claims(
            subject=str(claims["sub"]),
            username=str(claims.get("username", "")),
            scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            raw=claims,
        )
