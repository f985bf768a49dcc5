"""A test token issuer: an Ed25519 key, a real JWKS endpoint on a free port, and tokens.

async with TokenIssuer() as issuer:        # serves issuer.jwks_url
    token = issuer.token("user-1", "alice")
"""

from __future__ import annotations

import json
import time
import uuid
from types import TracebackType
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stack.netutil import free_port


class TokenIssuer:
    def __init__(self, issuer: str = "astratrade-users", audience: str = "astratrade") -> None:
        self.issuer = issuer
        self.audience = audience
        self.key = Ed25519PrivateKey.generate()
        self.kid = uuid.uuid4().hex[:16]
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "alg": "EdDSA", "use": "sig"}]}

    def token(self, subject: str, username: str = "", *, ttl: int = 300, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": subject,
            "username": username or subject,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": self.kid})

    async def __aenter__(self) -> TokenIssuer:
        app = web.Application()

        async def jwks(_: web.Request) -> web.Response:
            return web.json_response(self.jwks())

        app.router.add_get("/.well-known/jwks.json", jwks)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
