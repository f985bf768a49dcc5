"""Rate limits shared across gateway replicas through Redis, and the per-replica fallback."""

from __future__ import annotations

import aiohttp
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from gateway.config import RateLimitRule, RateLimitSettings
from gateway.metrics import GatewayMetrics
from gateway.ratelimit import RateLimiter
from stack.netutil import free_port
from tests.gateway.conftest import GatewayAt, UpstreamFactory, until_routed

TIGHT = {"default": {"rate": 0.2, "burst": 3}}


@pytest.mark.integration
async def test_limit_is_shared_by_two_gateways_on_one_redis(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    await upstreams("trading", "trading-1")
    async with (
        gateway_at(redis_url, rate_limit=TIGHT, services=("trading",)) as one,
        gateway_at(redis_url, rate_limit=TIGHT, services=("trading",)) as two,
    ):
        for base in (one, two):  # ready = sees trading; no proxied request spent yet
            await until_routed(http, f"{base}/health/ready")
        statuses = []
        remaining = []
        for base in (one, two, one):
            async with http.get(f"{base}/api/v1/trading/markets") as response:
                statuses.append(response.status)
                remaining.append(response.headers["RateLimit-Remaining"])
        assert statuses == [200, 200, 200]
        assert remaining == ["2", "1", "0"]
        async with http.get(f"{two}/api/v1/trading/markets") as response:
            assert response.status == 429
            assert response.content_type == "application/problem+json"
            assert int(response.headers["Retry-After"]) >= 1
            assert response.headers["RateLimit-Limit"] == "3"
            assert response.headers["RateLimit-Remaining"] == "0"
            assert int(response.headers["RateLimit-Reset"]) >= 1
        for path in ("/health/live", "/metrics"):  # operator endpoints are never limited
            async with http.get(f"{two}{path}") as response:
                assert response.status == 200


async def test_without_redis_each_replica_limits_in_memory() -> None:
    dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.2)
    now = [100.0]
    limiter = RateLimiter(
        dead,
        RateLimitSettings(redis_timeout=0.2, redis_retry_seconds=5),
        GatewayMetrics(CollectorRegistry()),
        clock=lambda: now[0],
    )
    rule = RateLimitRule(rate=1, burst=2)
    try:
        decisions = [await limiter.check("default", rule, "ip:1.2.3.4") for _ in range(3)]
        assert [d.allowed for d in decisions] == [True, True, False]  # limited, not open
        assert decisions[2].retry_after == 1
        assert (await limiter.check("default", rule, "ip:5.6.7.8")).allowed  # not everyone
        now[0] += 1
        assert (await limiter.check("default", rule, "ip:1.2.3.4")).allowed
    finally:
        await dead.aclose()


@pytest.mark.integration
async def test_high_rates_are_not_capped_by_millisecond_rounding(
    redis_client: aioredis.Redis,
) -> None:
    """At 100,000 req/s with a burst of 5, back-to-back requests all pass: storing the
    arrival time rounded up to whole milliseconds would refuse all but the first."""
    registry = CollectorRegistry()
    limiter = RateLimiter(redis_client, RateLimitSettings(), GatewayMetrics(registry))
    rule = RateLimitRule(rate=100_000, burst=5)
    decisions = [await limiter.check("default", rule, "sub:fast") for _ in range(50)]
    assert all(d.allowed for d in decisions)
    by_redis = registry.get_sample_value(
        "astra_gateway_rate_limit_decisions_total",
        {"policy": "default", "decision": "allowed", "backend": "redis"},
    )
    assert by_redis == 50


@pytest.mark.integration
async def test_failed_authentication_is_rate_limited_too(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    await upstreams("trading", "trading-1")
    async with gateway_at(redis_url, rate_limit=TIGHT, services=("trading",)) as gateway:
        await until_routed(http, f"{gateway}/health/ready")
        statuses = []
        for _ in range(5):
            async with http.get(
                f"{gateway}/api/v1/trading/portfolio", headers={"Authorization": "Bearer forged"}
            ) as response:
                statuses.append(response.status)
        assert statuses == [401, 401, 401, 429, 429]
