"""Every defence switch of the gateway really switches its defence off.

A chaos drill run `--without-defence` sets one of these and must fail; so each
test shows the same fault answered differently with the switch on and off.
"""

from __future__ import annotations

import time

import aiohttp
import pytest
from multidict import CIMultiDict

from backbone.registry import InstanceInfo
from gateway.balancer import Balancer
from gateway.breaker import CircuitBreaker
from gateway.config import (
    BreakerSettings,
    FallbackSettings,
    GatewaySettings,
    UpstreamSettings,
)
from gateway.fallback import StaleCache
from tests.gateway.conftest import GatewayAt, UpstreamFactory, until_routed
from tests.support.poll import poll_until
from tests.support.settings import TEST_OPERATOR_TOKEN, TEST_REGISTRY_TOKEN

ORDERS = "POST /api/v1/trading/orders"


# --- the settings, from the environment as the drills set them ------------------------------


def test_every_switch_reads_from_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRA_GATEWAY_OPERATOR_TOKEN", TEST_OPERATOR_TOKEN)
    monkeypatch.setenv("ASTRA_REGISTRY__TOKEN", TEST_REGISTRY_TOKEN)
    on = GatewaySettings()
    assert on.breaker.enabled
    assert on.fallback.enabled
    assert on.upstream.retries_enabled
    assert on.upstream.outlier_ejection
    assert on.upstream.route_timeouts_enabled
    assert on.registry.stale_cache
    for name in (
        "ASTRA_BREAKER__ENABLED",
        "ASTRA_FALLBACK__ENABLED",
        "ASTRA_UPSTREAM__RETRIES_ENABLED",
        "ASTRA_UPSTREAM__OUTLIER_EJECTION",
        "ASTRA_UPSTREAM__ROUTE_TIMEOUTS",
        "ASTRA_REGISTRY__STALE_CACHE",
    ):
        monkeypatch.setenv(name, "false")
    off = GatewaySettings()
    assert not off.breaker.enabled
    assert not off.fallback.enabled
    assert not off.upstream.retries_enabled
    assert not off.upstream.outlier_ejection
    assert not off.upstream.route_timeouts_enabled
    assert off.upstream.route_timeouts == {}
    assert not off.registry.stale_cache


def test_route_timeouts_is_still_the_table_of_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRA_GATEWAY_OPERATOR_TOKEN", TEST_OPERATOR_TOKEN)
    monkeypatch.setenv("ASTRA_REGISTRY__TOKEN", TEST_REGISTRY_TOKEN)
    monkeypatch.setenv("ASTRA_UPSTREAM__ROUTE_TIMEOUTS", f'{{"{ORDERS}": 3}}')
    upstream = GatewaySettings().upstream
    assert upstream.route_timeouts == {ORDERS: 3.0}
    assert upstream.route_timeouts_enabled


def test_attempt_timeout_is_the_routes_unless_switched_off() -> None:
    on = UpstreamSettings(total_timeout=10, timeouts={"users": 4})
    off = on.model_copy(update={"route_timeouts_enabled": False})
    assert on.attempt_timeout("users", 1.5) == 1.5
    assert off.attempt_timeout("users", 1.5) == 4  # the service's
    assert off.attempt_timeout("trading", 1.5) == 10  # total_timeout
    assert on.attempt_timeout("trading", None) == off.attempt_timeout("trading", None) == 10


# --- pure: breaker, stale cache, ejection -----------------------------------------------------


@pytest.mark.parametrize("enabled", [True, False])
def test_breaker_switch(enabled: bool) -> None:
    breaker = CircuitBreaker(
        "trading", BreakerSettings(enabled=enabled, min_requests=4, failure_rate=0.5)
    )
    for _ in range(10):
        ticket = breaker.admit()
        if ticket is not None:
            breaker.record(ticket, ok=False)
    if enabled:
        assert breaker.state == "open"
        assert breaker.admit() is None
    else:
        assert breaker.state == "closed"
        assert breaker.admit() is not None


@pytest.mark.parametrize("enabled", [True, False])
def test_fallback_switch(enabled: bool) -> None:
    cache = StaleCache(FallbackSettings(enabled=enabled))
    cache.store("/api/v1/trading/markets", [], b"[]")
    assert (cache.lookup("/api/v1/trading/markets") is not None) is enabled


@pytest.mark.parametrize("enabled", [True, False])
def test_outlier_ejection_switch_for_failures(enabled: bool) -> None:
    balancer = Balancer("s", UpstreamSettings(outlier_ejection=enabled, eject_after_failures=2))
    a, b = (
        InstanceInfo(service="s", instance_id=n, url=f"http://{n}", version="1", status="ready")
        for n in ("a", "b")
    )
    for _ in range(5):
        balancer.started("a")
        balancer.finished("a", ok=False)
    assert balancer.is_ejected("a") is enabled
    picks = {balancer.pick([a, b]).instance_id for _ in range(50)}  # type: ignore[union-attr]
    assert picks == ({"b"} if enabled else {"a", "b"})


# --- through a real gateway ---------------------------------------------------------------


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, CIMultiDict[str], bytes]:
    async with http.get(url) as response:
        body = await response.read()
        return response.status, response.headers.copy(), body


@pytest.mark.integration
@pytest.mark.parametrize("enabled", [True, False])
async def test_breaker_switch_through_the_gateway(
    enabled: bool,
    redis_url: str,
    upstreams: UpstreamFactory,
    gateway_at: GatewayAt,
    http: aiohttp.ClientSession,
) -> None:
    trading = await upstreams("trading", "trading-1", mode="fail")
    breaker = {"enabled": enabled, "min_requests": 4, "cooldown_seconds": 30}
    async with gateway_at(redis_url, breaker=breaker, upstream={"retries_enabled": False}) as base:
        url = f"{base}/api/v1/trading/markets"

        async def routed() -> bool:
            await _get(http, url)
            return bool(trading.seen)

        await poll_until(routed, "trading routed", timeout=5)
        statuses = [(await _get(http, url))[0] for _ in range(12)]
        before = len(trading.seen)
        statuses += [(await _get(http, url))[0] for _ in range(5)]
    if enabled:
        assert statuses[-5:] == [503] * 5  # open: refused at the gateway
        assert len(trading.seen) == before  # and nothing reached the service
    else:
        assert statuses == [500] * 17  # every request went upstream and failed there
        assert len(trading.seen) == before + 5


@pytest.mark.integration
@pytest.mark.parametrize("enabled", [True, False])
async def test_fallback_switch_through_the_gateway(
    enabled: bool,
    redis_url: str,
    upstreams: UpstreamFactory,
    gateway_at: GatewayAt,
    http: aiohttp.ClientSession,
) -> None:
    trading = await upstreams("trading", "trading-1")
    async with gateway_at(redis_url, fallback={"enabled": enabled}) as base:
        url = f"{base}/api/v1/trading/markets"
        await until_routed(http, url)
        await trading.kill()  # still registered: the gateway finds out by calling it
        status, headers, body = await _get(http, url)
    if enabled:
        assert status == 200
        assert headers["X-Astra-Fallback"] == "stale-cache"
    else:
        assert status == 502
        assert "X-Astra-Fallback" not in headers
        assert headers["Content-Type"].startswith("application/problem+json")
        assert b"unreachable" in body


@pytest.mark.integration
@pytest.mark.parametrize("enabled", [True, False])
async def test_retries_switch_through_the_gateway(
    enabled: bool,
    redis_url: str,
    upstreams: UpstreamFactory,
    gateway_at: GatewayAt,
    http: aiohttp.ClientSession,
) -> None:
    one = await upstreams("trading", "trading-1")
    two = await upstreams("trading", "trading-2")
    # Ejection off, so the dead instance keeps being chosen: only retries can save a request.
    # A budget that cannot run out here: the switch, not the budget, decides.
    upstream = {"retries_enabled": enabled, "outlier_ejection": False, "retry_budget_floor": 100}
    async with gateway_at(
        redis_url, upstream=upstream, fallback={"enabled": False}, breaker={"enabled": False}
    ) as base:
        url = f"{base}/api/v1/trading/markets"

        async def both_seen() -> bool:
            await _get(http, url)
            return bool(one.seen and two.seen)

        await poll_until(both_seen, "both instances routed")
        await two.kill()
        statuses = [(await _get(http, url))[0] for _ in range(30)]
        _, _, metrics = await _get(http, f"{base}/metrics")
    if enabled:
        assert statuses == [200] * 30  # each failed attempt retried on trading-1
        assert b'astra_gateway_retries_total{result="retried",service="trading"}' in metrics
    else:
        assert 502 in statuses
        assert 200 in statuses
        assert b'result="retried"' not in metrics


@pytest.mark.integration
@pytest.mark.parametrize("enabled", [True, False])
async def test_route_timeouts_switch_through_the_gateway(
    enabled: bool,
    redis_url: str,
    upstreams: UpstreamFactory,
    gateway_at: GatewayAt,
    http: aiohttp.ClientSession,
) -> None:
    await upstreams("trading", "trading-1", mode="slow", delay=1.0)
    upstream = {
        "total_timeout": 5.0,
        # markets (a read: 1 s by its class) may wait out the slow upstream, to route.
        "route_timeouts": {ORDERS: 0.3, "GET /api/v1/trading/markets": 3.0},
        "route_timeouts_enabled": enabled,
    }
    async with gateway_at(redis_url, upstream=upstream) as base:
        await until_routed(http, f"{base}/api/v1/trading/markets")
        started = time.monotonic()
        async with http.post(f"{base}/api/v1/trading/orders", json={}) as response:
            await response.read()
            status = response.status
        took = time.monotonic() - started
    if enabled:
        assert status == 504
        assert took < 0.9
    else:
        assert status == 200
        assert took >= 1.0


@pytest.mark.integration
@pytest.mark.parametrize("stale_after", [0.2, 0.0])
async def test_a_slow_service_gets_the_stale_copy_after_the_read_threshold(
    stale_after: float,
    redis_url: str,
    upstreams: UpstreamFactory,
    gateway_at: GatewayAt,
    http: aiohttp.ClientSession,
) -> None:
    trading = await upstreams("trading", "trading-1")
    fallback = {"stale_after_seconds": stale_after}
    async with gateway_at(redis_url, fallback=fallback) as base:
        url = f"{base}/api/v1/trading/markets"
        await until_routed(http, url)  # a good answer: now a copy is cached
        trading.mode, trading.delay = "slow", 0.8
        started = time.monotonic()
        async with http.get(url) as response:
            body = await response.read()
            marker = response.headers.get("X-Astra-Fallback")
            status = response.status
        took = time.monotonic() - started
    assert status == 200
    assert body
    if stale_after:
        assert marker == "stale-slow"  # said to be what it is
        assert took < 0.6, took
    else:
        assert marker is None  # waited for the fresh answer
        assert took >= 0.8, took
