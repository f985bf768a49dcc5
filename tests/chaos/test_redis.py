"""A real Redis client through the proxy: latency, then an outage, then recovery."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from chaos.client import ToxiproxyClient
from stack.redis_server import RedisServer
from tests.support.poll import poll_until

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


async def test_redis_sees_latency_then_outage_then_recovers(
    toxiproxy: ToxiproxyClient, redis_server: RedisServer
) -> None:
    proxy = await toxiproxy.create_proxy("redis", upstream=f"127.0.0.1:{redis_server.port}")
    host, port = proxy.address
    client = aioredis.Redis(
        host=host,
        port=port,
        socket_timeout=3,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),  # surface the outage instead of retrying through it
    )
    try:
        await client.set("chaos:key", "v")
        start = time.perf_counter()
        assert await client.get("chaos:key") == b"v"
        baseline = time.perf_counter() - start
        assert baseline < 0.1

        async with proxy.toxic("latency", latency=200):
            start = time.perf_counter()
            assert await client.get("chaos:key") == b"v"
            assert time.perf_counter() - start >= 0.2

        async with proxy.down():
            with pytest.raises(RedisConnectionError):
                await client.get("chaos:key")  # the pooled connection was dropped
            with pytest.raises(RedisConnectionError):
                await client.get("chaos:key")  # and a new one is refused

        async def recovered() -> bool:
            try:
                return await client.get("chaos:key") == b"v"
            except RedisConnectionError:
                return False

        await poll_until(recovered, "redis through the re-enabled proxy", timeout=5)
        start = time.perf_counter()
        await client.get("chaos:key")
        assert time.perf_counter() - start < 0.1
    finally:
        await client.aclose()
