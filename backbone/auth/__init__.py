"""JWT verification against a JWKS: the gateway and every service verify the same way.

    verifier = JwtVerifier(JwksCache(fetch_url), issuer="astratrade-users", audience="astratrade")
    claims = await verifier.verify(token)      # raises InvalidToken

The algorithm is pinned to EdDSA (the users service signs with Ed25519), so a
token claiming `none` or an HMAC algorithm keyed with the public key is refused.
"""

from __future__ import annotations

from backbone.auth.bearer import bearer_token, challenge
from backbone.auth.jwks import JwksCache, JwksFetchError
from backbone.auth.locate import users_jwks_url
from backbone.auth.verify import (
    ALGORITHMS,
    Claims,
    InvalidToken,
    JwtVerifier,
    SigningKeysUnavailable,
)

__all__ = [
    "ALGORITHMS",
    "Claims",
    "InvalidToken",
    "JwksCache",
    "JwksFetchError",
    "JwtVerifier",
    "SigningKeysUnavailable",
    "bearer_token",
    "challenge",
    "users_jwks_url",
]
