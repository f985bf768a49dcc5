"""JWT verification against a real JWKS endpoint: pinned algorithm, claims, outages."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from backbone.auth import InvalidToken, JwksCache, JwtVerifier
from tests.support.tokens import TokenIssuer


def verifier(url: str, **cache: float) -> JwtVerifier:
    return JwtVerifier(JwksCache(url, **cache), issuer="astratrade-users", audience="astratrade")


async def test_tokens_are_checked_and_keys_survive_an_issuer_outage() -> None:
    issuer = TokenIssuer()
    async with issuer:
        check = verifier(issuer.jwks_url, max_age_seconds=0.0, min_refresh_interval=0.0)
        claims = await check.verify(issuer.token("user-1", "alice"))
        assert (claims.subject, claims.username) == ("user-1", "alice")
        for bad in (
            issuer.token("u", ttl=-60),  # expired
            issuer.token("u", aud="someone-else"),
            issuer.token("u", iss="evil"),
        ):
            with pytest.raises(InvalidToken):
                await check.verify(bad)
    # The issuer is gone: a known key keeps verifying (no mass logout) ...
    assert (await check.verify(issuer.token("user-1"))).subject == "user-1"
    # ... a token signed by another key does not.
    with pytest.raises(InvalidToken):
        await check.verify(TokenIssuer().token("user-1"))


async def test_alg_none_and_hmac_with_the_public_key_are_refused() -> None:
    async with TokenIssuer() as issuer:
        check = verifier(issuer.jwks_url)
        header = base64.urlsafe_b64encode(
            json.dumps({"alg": "none", "kid": issuer.kid}).encode()
        ).rstrip(b"=")
        body = base64.urlsafe_b64encode(json.dumps({"sub": "admin"}).encode()).rstrip(b"=")
        with pytest.raises(InvalidToken, match="not accepted"):
            await check.verify(f"{header.decode()}.{body.decode()}.")
        public_x = issuer.jwks()["keys"][0]["x"]
        forged = jwt.encode(
            {"sub": "admin"}, public_x, algorithm="HS256", headers={"kid": issuer.kid}
        )
        with pytest.raises(InvalidToken, match="not accepted"):
            await check.verify(forged)
        with pytest.raises(InvalidToken):
            await check.verify("not.a.token")
