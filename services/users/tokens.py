"""Access tokens: EdDSA (Ed25519) JWTs, the JWKS that publishes the public half, local checks.

    signer = TokenSigner(key, issuer="astratrade-users", audience="astratrade", ttl_seconds=900)
    issued = signer.issue(user_id, username)   # IssuedToken(token, expires_in)
    signer.jwks()                              # {"keys": [{"kty": "OKP", "kid": ..., ...}]}

The `kid` is the key's RFC 7638 thumbprint, so every instance sharing the key
file announces the same id, and a new key gets a new id without bookkeeping.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from backbone.auth import JwksCache, JwtVerifier


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int  # seconds


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class TokenSigner:
    def __init__(
        self, key: Ed25519PrivateKey, *, issuer: str, audience: str, ttl_seconds: int
    ) -> None:
        self._key = key
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self.public_key = key.public_key()
        raw = self.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._public_jwk = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
        # RFC 7638: SHA-256 of the required members, sorted, without whitespace.
        canonical = json.dumps(self._public_jwk, sort_keys=True, separators=(",", ":"))
        self.kid = _b64url(hashlib.sha256(canonical.encode()).digest())

    def issue(self, user_id: str, username: str) -> IssuedToken:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": user_id,
            "username": username,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_seconds,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(
            claims, self._key, algorithm="EdDSA", headers={"kid": self.kid, "typ": "JWT"}
        )
        return IssuedToken(token, self.ttl_seconds)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**self._public_jwk, "kid": self.kid, "alg": "EdDSA", "use": "sig"}]}

    def verifier(self) -> JwtVerifier:
        """Checks our own tokens exactly as other services do, minus the HTTP fetch."""
        return JwtVerifier(
            LocalKeySet(self.kid, self.public_key), issuer=self.issuer, audience=self.audience
        )


class LocalKeySet(JwksCache):
    """A key set that is never fetched: the users service knows its own public key."""

    def __init__(self, kid: str, key: Ed25519PublicKey) -> None:
        super().__init__("")
        self._kid = kid
        self._key = key

    async def get(self, kid: str) -> Any:
        return self._key if kid == self._kid else None
