"""Drill 5's rule: an instance whose registration lapsed (it lost Redis, not its job)
stays routable on the gateway's own evidence, for a bounded grace; a deregistered or
failing one does not."""

from __future__ import annotations

import aiohttp
import pytest

from backbone.registry import Registrar
from tests.gateway.conftest import FAST_REGISTRY, GatewayAt, UpstreamFactory, until_routed
from tests.support.poll import poll_until

pytestmark = pytest.mark.integration

GRACE = 3.0
NO_STALE_ANSWERS = {"enabled": False}  # so each status below is the instance's own


def _stop_beating(registrar: Registrar | None) -> None:
    """As an instance that lost its own path to Redis: no beats, no deregistration."""
    assert registrar is not None
    task, registrar._task = registrar._task, None
    assert task is not None
    task.cancel()


async def _status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as response:
        await response.read()
        return response.status


async def _lapsed(http: aiohttp.ClientSession, base: str) -> float:
    async with http.get(f"{base}/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith('astra_registry_instances_lapsed{service="trading"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_lapsed_instance_keeps_serving_until_it_fails(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    trading = await upstreams("trading", "trading-1")
    registry = FAST_REGISTRY.model_copy(update={"expired_grace_seconds": GRACE})
    async with gateway_at(redis_url, registry=registry, fallback=NO_STALE_ANSWERS) as base:
        url = f"{base}/api/v1/trading/markets"
        await until_routed(http, url)
        _stop_beating(trading.registrar)

        async def marked() -> bool:
            return await _lapsed(http, base) == 1

        await poll_until(marked, "the record to lapse (and the gauge to say so)")
        # Its record is gone from Redis, and the gateway still routes to it: it works.
        assert [await _status(http, url) for _ in range(5)] == [200] * 5

        await trading.kill()
        assert await _status(http, url) == 502  # the one failure that ends its grace
        assert await _status(http, url) == 503  # no instance left to route to
        assert await _lapsed(http, base) == 0


async def test_the_grace_is_bounded(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    trading = await upstreams("trading", "trading-1")
    registry = FAST_REGISTRY.model_copy(update={"expired_grace_seconds": 1.0})
    async with gateway_at(redis_url, registry=registry, fallback=NO_STALE_ANSWERS) as base:
        url = f"{base}/api/v1/trading/markets"
        await until_routed(http, url)
        _stop_beating(trading.registrar)

        async def refused() -> bool:
            return await _status(http, url) == 503

        # Serving all along, and still refused once the grace (1 s past expiry) is over.
        await poll_until(refused, "the grace to end", timeout=1.0 + FAST_REGISTRY.ttl_seconds + 2)


@pytest.mark.parametrize("grace", [GRACE, 0.0])
async def test_a_deregistered_instance_is_dropped_at_once(
    grace: float,
    redis_url: str,
    upstreams: UpstreamFactory,
    gateway_at: GatewayAt,
    http: aiohttp.ClientSession,
) -> None:
    trading = await upstreams("trading", "trading-1")
    registry = FAST_REGISTRY.model_copy(update={"expired_grace_seconds": grace})
    async with gateway_at(redis_url, registry=registry, fallback=NO_STALE_ANSWERS) as base:
        url = f"{base}/api/v1/trading/markets"
        await until_routed(http, url)
        assert trading.registrar is not None
        await trading.registrar.aclose()  # graceful shutdown: the record is deleted

        async def refused() -> bool:
            return await _status(http, url) == 503

        await poll_until(refused, "the deregistered instance to be dropped", timeout=1.0)
        assert await _lapsed(http, base) == 0
