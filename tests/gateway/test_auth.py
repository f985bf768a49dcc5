"""Edge authentication with real EdDSA tokens and a real JWKS endpoint."""

from __future__ import annotations

import jwt
import pytest
from aiohttp import ClientSession

from gateway.config import GatewaySettings
from tests.gateway.conftest import GatewayAt, UpstreamFactory, until_routed
from tests.support.tokens import TokenIssuer

pytestmark = pytest.mark.integration

DEFAULT_PUBLIC = GatewaySettings.model_fields["public_routes"].default


async def test_tokens_are_verified_on_every_route(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: ClientSession
) -> None:
    users = await upstreams("users", "users-1")
    trading = await upstreams("trading", "trading-1")
    async with (
        TokenIssuer() as issuer,
        TokenIssuer() as forger,
        gateway_at(redis_url, jwks_url=issuer.jwks_url, public_routes=DEFAULT_PUBLIC) as base,
    ):
        # Public by its declaration (`RouteSpec.public`); a path below it that no route
        # declares is not (it was, while public routes were path prefixes).
        markets = f"{base}/api/v1/trading/markets"
        portfolio = f"{base}/api/v1/trading/portfolio"
        await until_routed(http, markets)  # public: no token needed
        async with http.get(f"{markets}/BTC-USD") as response:
            assert response.status == 401

        async with http.get(portfolio) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert response.content_type == "application/problem+json"

        good = issuer.token("user-1", "alice")
        async with http.get(portfolio, headers={"Authorization": f"Bearer {good}"}) as response:
            assert response.status == 200
        assert trading.seen[-1]["headers"]["Authorization"] == f"Bearer {good}"  # verified again

        none_alg = jwt.encode(
            {"sub": "user-1", "iss": issuer.issuer, "aud": issuer.audience},
            key=None,
            algorithm="none",
            headers={"kid": issuer.kid},
        )
        forged = forger.token("user-1")
        forged = jwt.encode(
            jwt.decode(forged, options={"verify_signature": False}),
            forger.key,
            algorithm="EdDSA",
            headers={"kid": issuer.kid},  # claims the real key id, signed with another key
        )
        bad = {
            "expired": issuer.token("user-1", ttl=-60),
            "wrong audience": issuer.token("user-1", aud="someone-else"),
            "alg none": none_alg,
            "forged": forged,
            "garbage": "not-a-jwt",
        }
        for why, token in bad.items():
            for url in (portfolio, markets):  # a sent token is verified on public routes too
                async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
                    assert r.status == 401, (why, url)
                    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
        async with http.get(markets, headers={"Authorization": "Basic dTpw"}) as response:
            assert response.status == 401

        users.seen.clear()
        async with http.post(f"{base}/api/v1/users/login", data=b"{}") as response:
            assert response.status == 200  # public
        async with http.post(f"{base}/api/v1/users/logout") as response:
            assert response.status == 401
        assert [s["path"] for s in users.seen] == ["/api/v1/users/login"]


async def test_unreachable_signing_keys_are_a_503_not_a_401(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: ClientSession
) -> None:
    """The issuer's JWKS cannot be fetched and no key is cached: the gateway cannot judge
    the token. A 401 would tell the client its token is bad (and to log out); the
    honest answer is 503 with Retry-After, and nothing reaches the upstream."""
    await upstreams("users", "users-1")
    trading = await upstreams("trading", "trading-1")
    issuer = TokenIssuer()  # never started: its JWKS port refuses connections
    async with gateway_at(
        redis_url, jwks_url=issuer.jwks_url, public_routes=DEFAULT_PUBLIC
    ) as base:
        await until_routed(http, f"{base}/api/v1/trading/markets")
        before = len(trading.seen)
        token = issuer.token("user-1", "alice")
        async with http.get(
            f"{base}/api/v1/trading/portfolio", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            assert response.content_type == "application/problem+json"
            assert "Cannot verify tokens now" in (await response.json())["detail"]
        assert len(trading.seen) == before
