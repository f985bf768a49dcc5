"""Token verification with the algorithm pinned and every time/audience claim checked.

Verified tokens are remembered (a bounded LRU keyed by the token's SHA-256) until
they expire: a client sends the same token with every request, and an EdDSA check
plus the claim parsing is most of what verifying costs (bench/README.md). A
remembered token is accepted again only while it is inside its `nbf`..`exp` window
(the same leeway) and its signing key is still the one the JWKS names under its
`kid`: a key rotated out of the JWKS refuses its tokens at once, cached or not. Any
other token, a tampered copy included, has another hash and is verified in full.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from backbone.auth.jwks import JwksCache, JwksFetchError
from backbone.errors import AstraError

ALGORITHMS = ("EdDSA",)
LEEWAY_SECONDS = 5


class InvalidToken(AstraError):
    """The bearer token is missing, malformed, expired, forged or not for us."""


class SigningKeysUnavailable(AstraError):
    """The token cannot be judged now: its signing keys could not be fetched (the
    issuer, or the registry that locates it, is unreachable and no key is cached).
    Not the client's fault, so not a 401 (which tells a client to drop its token):
    callers answer 503 with Retry-After."""


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str
    username: str
    scopes: frozenset[str]
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Verified:
    claims: Claims
    kid: str
    key: Any  # the key object it was verified with: still the JWKS's, or not
    not_before: float
    expires: float


class JwtVerifier:
    def __init__(
        self,
        jwks: JwksCache,
        *,
        issuer: str,
        audience: str,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._cache: OrderedDict[bytes, _Verified] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock

    async def verify(self, token: str) -> Claims:
        digest = hashlib.sha256(token.encode()).digest()
        known = self._cache.get(digest)
        if known is not None:
            now = self._clock()
            in_window = known.not_before - LEEWAY_SECONDS <= now < known.expires + LEEWAY_SECONDS
            if in_window and await self._current_key(known.kid) is known.key:
                self._cache.move_to_end(digest)
                return known.claims
            del self._cache[digest]  # expired or its key rotated out: verified in full
        claims, kid, key = await self._verify_in_full(token)
        raw = claims.raw
        if self._cache_size > 0:
            self._cache[digest] = _Verified(claims, kid, key, float(raw["nbf"]), float(raw["exp"]))
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return claims

    async def _current_key(self, kid: str) -> Any:
        try:
            return await self._jwks.get(kid)
        except JwksFetchError:
            return None

    async def _verify_in_full(self, token: str) -> tuple[Claims, str, Any]:
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
            raise SigningKeysUnavailable(f"signing keys unavailable: {e}") from e
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
                # exp and nbf are checked below against this verifier's clock, the one
                # the remembered tokens are judged by too: one notion of "now".
                options={
                    "require": ["exp", "iat", "nbf", "sub", "iss", "aud"],
                    "verify_exp": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as e:
            raise InvalidToken(str(e)) from e
        try:
            expires, not_before = float(claims["exp"]), float(claims["nbf"])
        except (TypeError, ValueError) as e:
            raise InvalidToken("exp and nbf must be numbers") from e
        now = self._clock()
        if now >= expires + LEEWAY_SECONDS:
            raise InvalidToken("Signature has expired")
        if now < not_before - LEEWAY_SECONDS:
            raise InvalidToken("The token is not yet valid (nbf)")
        scope = claims.get("scope", "")
        verified = Claims(
            subject=str(claims["sub"]),
            username=str(claims.get("username", "")),
            scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            raw=claims,
        )
        return verified, kid, key
