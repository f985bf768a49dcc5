"""JWT verification against a real JWKS endpoint: pinned algorithm, claims, outages."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backbone.auth import InvalidToken, JwksCache, JwtVerifier, SigningKeysUnavailable
from backbone.auth.verify import LEEWAY_SECONDS
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
    # ... a token signed by another key does not: its kid is unknown, and with the
    # issuer gone it cannot be learnt, so it is neither accepted nor called invalid.
    with pytest.raises(SigningKeysUnavailable):
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


# --- remembered tokens ---------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_a_remembered_token_skips_the_signature_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded = []
    real = jwt.decode

    def counting(*args: Any, **kwargs: Any) -> Any:
        decoded.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    async with TokenIssuer() as issuer:
        check = verifier(issuer.jwks_url)
        token = issuer.token("user-1", "alice")
        for _ in range(5):
            assert (await check.verify(token)).subject == "user-1"
    assert len(decoded) == 1  # verified once, then remembered


async def test_a_remembered_token_is_refused_once_it_expires() -> None:
    clock = _Clock()
    async with TokenIssuer() as issuer:
        check = JwtVerifier(
            JwksCache(issuer.jwks_url), issuer="astratrade-users", audience="astratrade",
            clock=clock,
        )  # fmt: skip
        token = issuer.token("user-1", ttl=60)
        assert (await check.verify(token)).subject == "user-1"
        clock.now += 60 + LEEWAY_SECONDS - 1
        assert (await check.verify(token)).subject == "user-1"  # within the leeway
        clock.now += 2
        with pytest.raises(InvalidToken, match="expired"):
            await check.verify(token)


async def test_a_remembered_token_is_refused_once_its_key_is_rotated_out() -> None:
    async with TokenIssuer() as issuer:
        check = verifier(issuer.jwks_url, max_age_seconds=0.0, min_refresh_interval=0.0)
        old = issuer.token("user-1")
        assert (await check.verify(old)).subject == "user-1"
        issuer.key = Ed25519PrivateKey.generate()  # the JWKS now names only the new key
        issuer.kid = "rotated-key"
        with pytest.raises(InvalidToken, match="unknown signing key"):
            await check.verify(old)
        assert (await check.verify(issuer.token("user-1"))).subject == "user-1"


async def test_a_tampered_copy_of_a_remembered_token_is_refused() -> None:
    async with TokenIssuer() as issuer:
        check = verifier(issuer.jwks_url)
        token = issuer.token("user-1")
        await check.verify(token)
        head, body, signature = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        claims["sub"] = "admin"
        forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
        with pytest.raises(InvalidToken):
            await check.verify(f"{head}.{forged_body.decode()}.{signature}")


async def test_keys_that_cannot_be_fetched_are_not_an_invalid_token() -> None:
    issuer = TokenIssuer()  # never started: nothing answers on its JWKS port
    check = verifier(issuer.jwks_url, min_refresh_interval=0.0)
    with pytest.raises(SigningKeysUnavailable):
        await check.verify(issuer.token("user-1"))
