"""The gateway's retries: the only ones (no hidden re-send), and in time.

aiohttp re-sends an idempotent request whose reused keep-alive connection was
closed under it, to the same instance, uncounted and outside the retry budget.
The gateway turns that off (gateway/upstream.py); these tests use an upstream
that closes every reused connection at its second request without answering, so
a hidden re-send would show as a third request and a 200. And a read whose first
instance hangs is retried on another within the route's timeout (per-try timeout).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from backbone.registry import InstanceInfo, Registrar
from tests.gateway.conftest import FAST_REGISTRY, GatewayAt, UpstreamFactory, until_routed
from tests.support.poll import poll_until

ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    b"Connection: keep-alive\r\n\r\n{}"
)


@dataclass
class ClosesReusedConnections:
    """Answers the first request of each connection; closes at the second, unanswered."""

    requests: int = 0
    connections: int = 0
    closed_by_client: int = 0  # connections the gateway closed (EOF before a request)
    server: asyncio.Server | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        answered = False
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    return
                self.requests += 1
                if answered:
                    return  # closed under a reused connection's second request
                writer.write(ANSWER)
                await writer.drain()
                answered = True
        except asyncio.IncompleteReadError:
            self.closed_by_client += 1
            return
        except ConnectionError:
            return
        finally:
            writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def closing_upstream(redis_url: str) -> AsyncIterator[ClosesReusedConnections]:
    upstream = ClosesReusedConnections()
    upstream.server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0)
    redis = aioredis.Redis.from_url(redis_url)
    registrar = Registrar(
        redis,
        InstanceInfo(
            service="trading",
            instance_id="trading-1",
            url=f"http://127.0.0.1:{upstream.port}",
            version="1",
            status="ready",
        ),
        FAST_REGISTRY,
        registry=CollectorRegistry(),
    )
    await registrar.start()
    try:
        yield upstream
    finally:
        await registrar.aclose()
        upstream.server.close()
        for writer in upstream.writers:
            writer.close()
        await redis.aclose()


async def _status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as response:
        await response.read()
        return response.status


@pytest.mark.integration
async def test_a_closed_keepalive_connection_is_not_silently_resent(
    redis_url: str,
    closing_upstream: ClosesReusedConnections,
    gateway_at: GatewayAt,
    http: aiohttp.ClientSession,
) -> None:
    upstream = {"retries_enabled": False, "outlier_ejection": False}
    async with gateway_at(
        redis_url, upstream=upstream, fallback={"enabled": False}, breaker={"enabled": False}
    ) as base:
        url = f"{base}/api/v1/trading/markets"

        async def routed() -> bool:
            return await _status(http, url) == 200

        await poll_until(routed, "the upstream routed", timeout=5)
        assert (closing_upstream.requests, closing_upstream.connections) == (1, 1)
        # The second GET reuses the pooled connection, which the upstream closes.
        assert await _status(http, url) == 502
    assert closing_upstream.requests == 2  # a hidden re-send would be a third, and a 200


@pytest.mark.integration
async def test_an_idle_pooled_connection_is_closed_before_the_upstream_closes_it(
    redis_url: str,
    closing_upstream: ClosesReusedConnections,
    gateway_at: GatewayAt,
    http: aiohttp.ClientSession,
) -> None:
    # `keepalive_seconds` below the upstream's idle timeout: the gateway closes an idle
    # connection itself, so it never sends a request on one the upstream is closing (the
    # upstream here closes at any reuse, which a longer keep-alive would hit: a 502).
    upstream = {"retries_enabled": False, "outlier_ejection": False, "keepalive_seconds": 0.3}
    async with gateway_at(
        redis_url, upstream=upstream, fallback={"enabled": False}, breaker={"enabled": False}
    ) as base:
        url = f"{base}/api/v1/trading/markets"

        async def routed() -> bool:
            return await _status(http, url) == 200

        await poll_until(routed, "the upstream routed", timeout=5)

        async def closed_by_the_gateway() -> bool:
            return closing_upstream.closed_by_client >= 1

        await poll_until(closed_by_the_gateway, "the idle connection closed", timeout=3)
        assert await _status(http, url) == 200  # on a new connection, not the closed one
    assert closing_upstream.connections == 2
    assert closing_upstream.requests == 2


@pytest.mark.integration
async def test_keepalive_off_opens_a_connection_per_request(
    redis_url: str,
    closing_upstream: ClosesReusedConnections,
    gateway_at: GatewayAt,
    http: aiohttp.ClientSession,
) -> None:
    upstream = {"retries_enabled": False, "keepalive": False}
    async with gateway_at(redis_url, upstream=upstream) as base:
        url = f"{base}/api/v1/trading/markets"

        async def routed() -> bool:
            return await _status(http, url) == 200

        await poll_until(routed, "the upstream routed", timeout=5)
        before = closing_upstream.connections
        statuses = [await _status(http, url) for _ in range(5)]
    assert statuses == [200] * 5  # never a reused connection, so never closed under one
    assert closing_upstream.connections == before + 5
    assert closing_upstream.requests == closing_upstream.connections


@pytest.mark.integration
@pytest.mark.parametrize("share", [0.5, 1.0])
async def test_a_read_on_a_hung_instance_is_retried_within_its_timeout(
    share: float,
    redis_url: str,
    upstreams: UpstreamFactory,
    gateway_at: GatewayAt,
    http: aiohttp.ClientSession,
) -> None:
    slow = await upstreams("trading", "trading-1", mode="slow", delay=3.0)
    fast = await upstreams("trading", "trading-2")
    # Ejection off, so the slow instance keeps being chosen; no stale copies to answer.
    upstream = {"per_try_share": share, "outlier_ejection": False, "retry_budget_floor": 100}
    async with gateway_at(
        redis_url,
        upstream={**upstream, "route_timeouts": {"GET /api/v1/trading/markets": 1.0}},
        fallback={"enabled": False},
        breaker={"enabled": False},
    ) as base:
        url = f"{base}/api/v1/trading/markets"

        async def both_routed() -> bool:
            await _status(http, url)
            return bool(slow.seen and fast.seen)

        await poll_until(both_routed, "both instances routed", timeout=20)
        answers = []
        for _ in range(6):
            started = time.monotonic()
            status = await _status(http, url)
            answers.append((status, time.monotonic() - started))
    slow_ones = [a for a in answers if a[1] >= 0.4]  # the ones that tried trading-1 first
    assert slow_ones, answers  # least-outstanding alternates: some went to the slow one
    if share < 1.0:
        # Half the route's second there, then the rest on trading-2: a 200 within it.
        assert all(status == 200 and took < 1.0 for status, took in answers), answers
    else:
        # The whole second on the hung instance, then the route's 504: no time to retry.
        assert all(status == 504 for status, _ in slow_ones), answers


@pytest.mark.integration
async def test_a_five_second_route_timeout_is_kept(
    redis_url: str,
    upstreams: UpstreamFactory,
    gateway_at: GatewayAt,
    http: aiohttp.ClientSession,
) -> None:
    # aiohttp rounds a timeout of 5 s or more up to the next whole second unless told
    # not to: a 5 s route answered its 504 after up to 6 s (the login-slow-close drill).
    hung = await upstreams("trading", "trading-1")
    upstream = {"retries_enabled": False, "route_timeouts": {"GET /api/v1/trading/markets": 5.0}}
    async with gateway_at(
        redis_url, upstream=upstream, fallback={"enabled": False}, breaker={"enabled": False}
    ) as base:
        url = f"{base}/api/v1/trading/markets"
        await until_routed(http, url)
        hung.mode, hung.delay = "slow", 8.0
        took = []
        for _ in range(3):  # rounded up, each would land under 5.2 s one time in five
            started = time.monotonic()
            assert await _status(http, url) == 504
            took.append(time.monotonic() - started)
    assert all(5.0 <= t < 5.2 for t in took), took


@dataclass
class ClosesFirstRequests:
    """Closes the connection, unanswered, for its first `failures` requests; then answers."""

    failures: int
    requests: int = 0
    server: asyncio.Server | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                if self.requests <= self.failures:
                    return  # a reset of this connection, as the request arrives
                writer.write(ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@pytest.mark.integration
@pytest.mark.parametrize("max_attempts", [2, 3])
async def test_a_reset_on_both_instances_gets_a_third_attempt(
    max_attempts: int,
    redis_url: str,
    gateway_at: GatewayAt,
    http: aiohttp.ClientSession,
) -> None:
    # Each instance drops its first request: whichever goes first, the second attempt
    # fails too; only a third, on the first instance again, can answer.
    redis = aioredis.Redis.from_url(redis_url)
    instances, registrars = [], []
    for name in ("trading-1", "trading-2"):
        upstream = ClosesFirstRequests(failures=0)
        upstream.server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0)
        port = int(upstream.server.sockets[0].getsockname()[1])
        info = InstanceInfo(
            service="trading", instance_id=name, url=f"http://127.0.0.1:{port}",
            version="1", status="ready",
        )  # fmt: skip
        registrar = Registrar(redis, info, FAST_REGISTRY, registry=CollectorRegistry())
        await registrar.start()
        instances.append(upstream)
        registrars.append(registrar)
    upstream_settings = {
        "max_attempts": max_attempts,
        "outlier_ejection": False,
        "keepalive": False,  # each attempt its own connection: the upstream counts requests
    }
    try:
        async with gateway_at(
            redis_url,
            upstream=upstream_settings,
            fallback={"enabled": False},
            breaker={"enabled": False},
        ) as base:
            url = f"{base}/api/v1/trading/markets"

            async def both_routed() -> bool:
                await _status(http, url)
                return all(u.requests for u in instances)

            await poll_until(both_routed, "both instances routed", timeout=10)
            for upstream in instances:
                upstream.failures, upstream.requests = 1, 0
            status = await _status(http, url)
        assert sorted(u.requests for u in instances) == ([1, 1] if max_attempts == 2 else [1, 2])
        assert status == (502 if max_attempts == 2 else 200)
    finally:
        for registrar in registrars:
            await registrar.aclose()
        for upstream in instances:
            assert upstream.server is not None
            upstream.server.close()
        await redis.aclose()
