"""The consumer's loops outlive a Redis that goes away, and one that forgets its groups."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from backbone.bus.consumer import Consumer, Event, HandlerContext
from backbone.bus.publisher import Publisher
from backbone.config import BusSettings
from stack.redis_server import RedisServer
from tests.support.events import Ping, Pinged
from tests.support.poll import poll_until

pytestmark = pytest.mark.integration

FAST = BusSettings(block_ms=50, claim_idle_ms=200, reaper_interval_ms=50)


def consumer(redis: aioredis.Redis, seen: list[int]) -> Consumer:
    async def handle(event: Event[Ping], ctx: HandlerContext) -> None:
        seen.append(event.data.n)

    return Consumer(
        redis, group="g", consumer="c1", handlers={Pinged: handle}, settings=FAST,
        producer="test", registry=CollectorRegistry(),
    )  # fmt: skip


async def publish(redis: aioredis.Redis, n: int) -> None:
    publisher = Publisher(redis, producer="test", settings=FAST, registry=CollectorRegistry())
    await publisher.publish(Pinged, Ping(n=n))


async def test_a_lost_group_is_recreated_and_reading_resumes(
    redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []
    c = consumer(redis_client, seen)
    await c.start()
    try:
        await publish(redis_client, 1)
        await poll_until(lambda: _seen(seen, 1), "the first event")
        # What a Redis restarted without its data looks like to the loops: no stream,
        # no group (NOGROUP on the next XREADGROUP and XAUTOCLAIM).
        with caplog.at_level(logging.WARNING, logger="backbone.bus.consumer"):
            await redis_client.delete(Pinged.stream_key)
            await poll_until(lambda: _group_exists(redis_client), "the group recreated", timeout=5)
            await publish(redis_client, 2)
            await poll_until(lambda: _seen(seen, 2), "an event after the group came back")
        assert c.running
        assert c.waiting_for_redis is None
        assert any("consumer group recreated" in r.getMessage() for r in caplog.records)
    finally:
        await c.aclose()


async def test_a_consumer_started_while_redis_is_away_reads_once_it_is_back(
    redis_factory: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_factory()
    redis = aioredis.Redis.from_url(server.url, socket_connect_timeout=0.5)
    seen: list[int] = []
    c = consumer(redis, seen)
    server.stop()
    try:
        with caplog.at_level(logging.DEBUG, logger="backbone.bus.consumer"):
            await c.start()  # no exception: the loops wait for Redis
            await poll_until(lambda: _waiting(c), "the consumer noticing the outage")
            assert c.running
            await poll_until(lambda: _retries(caplog, 5), "several retries")
            server.start()
            await publish(redis, 7)
            await poll_until(lambda: _seen(seen, 7), "the event after Redis came back", 10)
        assert c.waiting_for_redis is None
        lost = [r for r in caplog.records if "lost Redis" in r.getMessage()]
        reading = [r for r in lost if "reading" in r.getMessage()]
        assert len(reading) == 1, [r.getMessage() for r in lost]  # once, not per retry
        assert any("reconnected to Redis" in r.getMessage() for r in caplog.records)
    finally:
        await c.aclose()
        await redis.aclose()


async def _seen(seen: list[int], n: int) -> bool:
    return n in seen


async def _group_exists(redis: aioredis.Redis) -> bool:
    try:
        groups: list[dict[str, Any]] = await redis.xinfo_groups(Pinged.stream_key)
    except Exception:
        return False
    return any(g["name"] == b"g" for g in groups)


async def _waiting(c: Consumer) -> bool:
    return c.waiting_for_redis is not None


async def _retries(caplog: pytest.LogCaptureFixture, n: int) -> bool:
    return sum("still unreachable" in r.getMessage() for r in caplog.records) >= n
