"""The proxy path against real upstreams, a real Redis and the gateway under uvicorn."""

from __future__ import annotations

import aiohttp
import pytest

from backbone.registry import Discovery
from tests.gateway.conftest import FAST_REGISTRY, GatewayAt, UpstreamFactory, until_routed
from tests.support.poll import poll_until

pytestmark = pytest.mark.integration


async def test_forwards_path_query_and_clean_headers(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    users = await upstreams("users", "users-1")
    async with gateway_at(redis_url) as base:
        await until_routed(http, f"{base}/api/v1/users/ping")
        users.seen.clear()
        async with http.post(
            f"{base}/api/v1/users/a/b%20c?x=1&y=2",
            data=b"hello",
            headers={
                "X-User-ID": "admin",
                "X-User-Roles": "root",
                "X-Forwarded-User": "admin",
                "X-Forwarded-For": "6.6.6.6",
                "X-Correlation-ID": "cid-123",
                "Connection": "keep-alive, X-Secret-Hop",
                "X-Secret-Hop": "1",
            },
        ) as response:
            assert response.status == 200
            assert response.headers["X-Correlation-ID"] == "cid-123"
            doc = await response.json()
        assert doc == {
            "instance": "users-1",
            "path": "/api/v1/users/a/b%20c?x=1&y=2",
            "body": "hello",
        }
        seen = {k.lower(): v for k, v in users.seen[-1]["headers"].items()}
        for spoofed in ("x-user-id", "x-user-roles", "x-forwarded-user", "x-secret-hop"):
            assert spoofed not in seen
        assert seen["x-forwarded-for"] == "127.0.0.1"
        assert seen["x-forwarded-proto"] == "http"
        assert seen["x-correlation-id"] == "cid-123"


async def test_unknown_service_no_instance_and_body_cap(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    await upstreams("users", "users-1")
    async with gateway_at(redis_url, upstream={"max_body_bytes": 16}) as base:
        async with http.get(f"{base}/api/v1/nope/x") as response:
            assert response.status == 404
            assert response.content_type == "application/problem+json"
        async with http.get(f"{base}/api/v1/trading/markets") as response:
            assert response.status == 503
            assert response.headers["Retry-After"].isdigit()
            doc = await response.json(content_type=None)
            assert doc["service"] == "trading"
        await until_routed(http, f"{base}/api/v1/users/ping")
        async with http.post(f"{base}/api/v1/users/x", data=b"x" * 17) as response:
            assert response.status == 413
            assert response.content_type == "application/problem+json"

        async def chunks():  # no Content-Length: the cap holds while streaming too
            for _ in range(4):
                yield b"x" * 8

        async with http.post(f"{base}/api/v1/users/x", data=chunks()) as response:
            assert response.status == 413


async def test_timeout_is_504(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    users = await upstreams("users", "users-1")
    async with gateway_at(redis_url, upstream={"timeouts": {"users": 0.3}}) as base:
        await until_routed(http, f"{base}/api/v1/users/ping")
        users.mode = "slow"
        async with http.post(f"{base}/api/v1/users/x") as response:
            assert response.status == 504
            assert (await response.json(content_type=None))["service"] == "users"


async def test_health_metrics_and_self_registration(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    import redis.asyncio as aioredis
    from prometheus_client import CollectorRegistry

    await upstreams("users", "users-1")
    async with gateway_at(redis_url) as base:
        async with http.get(f"{base}/health/live") as response:
            assert response.status == 200
        async with http.get(f"{base}/health/ready") as response:
            assert response.status == 200  # no trading instance: degraded, users still served
            doc = await response.json(content_type=None)
            assert doc == {"status": "degraded", "failing": ["services.trading"]}  # names only
        await upstreams("trading", "trading-1")

        async def ready() -> bool:
            async with http.get(f"{base}/health/ready") as response:
                return (await response.json(content_type=None))["status"] == "ready"

        await poll_until(ready, "gateway ready")
        async with http.get(f"{base}/metrics") as response:
            text = await response.text()
            assert "astra_http_server_requests_total" in text
            assert "astra_gateway_upstream_requests_total" in text

        redis = aioredis.Redis.from_url(redis_url)
        discovery = Discovery(
            redis, FAST_REGISTRY, services=["gateway"], registry=CollectorRegistry()
        )
        try:
            await discovery.refresh()
            assert [i.url for i in discovery.instances("gateway")] == [base]
        finally:
            await discovery.aclose()
            await redis.aclose()


async def test_route_timeout_wins_over_the_service_timeout(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    trading = await upstreams("trading", "trading-1", delay=0.6)
    routes = {"route_timeouts": {"POST /api/v1/trading/orders": 0.2}}
    async with gateway_at(redis_url, upstream=routes) as base:
        await until_routed(http, f"{base}/api/v1/trading/markets")
        trading.mode = "slow"
        async with http.post(f"{base}/api/v1/trading/orders", json={}) as response:
            assert response.status == 504  # the order route's 0.2 s
        async with http.get(f"{base}/api/v1/trading/markets") as response:
            assert response.status == 200  # same service, default 10 s: waits the 0.6 s
