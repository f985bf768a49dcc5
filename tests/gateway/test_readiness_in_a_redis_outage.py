"""A gateway that lost Redis but routes from its registry cache stays in rotation.

Readiness that failed whenever Redis did would have every replica pulled out of
the load balancer in a Redis outage: the registry cache would keep routing for
no one. So readiness asks "can I route?", and says `degraded` while Redis is away;
with the cache switched off (`ASTRA_REGISTRY__STALE_CACHE=false`) discovery
empties its view and readiness fails, as it must.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from stack.redis_server import RedisServer
from tests.gateway.conftest import FAST_REGISTRY, GatewayAt, UpstreamFactory, until_routed
from tests.support.poll import poll_until
from tests.support.settings import TEST_OPERATOR_TOKEN

pytestmark = pytest.mark.integration

OPERATOR = {"Authorization": f"Bearer {TEST_OPERATOR_TOKEN}"}


async def _ready(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.get(url, **kw) as response:
        return response.status, await response.json(content_type=None)


@pytest.mark.parametrize("stale_cache", [True, False])
async def test_readiness_is_degraded_not_failed_while_the_cache_routes(
    stale_cache: bool,
    redis_server: RedisServer,
    redis_url: str,
    upstreams: UpstreamFactory,
    gateway_at: GatewayAt,
    http: aiohttp.ClientSession,
) -> None:
    await upstreams("users", "users-1")
    await upstreams("trading", "trading-1")
    registry = FAST_REGISTRY.model_copy(update={"stale_cache": stale_cache})
    async with gateway_at(redis_url, registry=registry) as base:
        ready = f"{base}/health/ready"
        await until_routed(http, f"{base}/api/v1/trading/markets")
        assert await _ready(http, ready) == (200, {"status": "ready"})

        redis_server.stop()
        if stale_cache:

            async def degraded() -> tuple[int, Any] | None:
                answer = await _ready(http, ready)
                return answer if answer[1].get("status") == "degraded" else None

            status, body = await poll_until(degraded, "readiness degraded", timeout=10)
            assert status == 200
            assert body["failing"] == ["redis"]  # anonymous: names only

            # Each part says so once it has noticed (discovery at its next refresh).
            async def cached_view() -> dict[str, Any] | None:
                status, full = await _ready(http, ready, headers=OPERATOR)
                assert status == 200
                listed = full["checks"].get("degraded", [])
                prefix = "registry: routing from the cached view ("
                cached = any(d.startswith(prefix) for d in listed)
                return full if cached else None

            full = await poll_until(cached_view, "the registry's cached view reported", timeout=10)
            assert full["checks"]["redis"].startswith("unreachable")
            assert "rate limits: per replica, in memory" in full["checks"]["degraded"]
            async with http.get(f"{base}/api/v1/trading/markets") as response:
                assert response.status == 200  # and it does route
        else:

            async def unready() -> int | None:
                status, _ = await _ready(http, ready)
                return status if status == 503 else None

            assert await poll_until(unready, "readiness failed", timeout=10) == 503
