"""Sampled bus gauges read what Redis reports, and the monitor stops promptly."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from backbone import keys
from backbone.bus.monitor import StreamMonitor
from backbone.bus.publisher import Publisher
from backbone.config import BusSettings
from stack.redis_server import RedisServer
from tests.support.events import Ping, Pinged
from tests.support.poll import poll_until

pytestmark = pytest.mark.integration
STREAM = Pinged.stream_key


async def test_gauges_show_length_lag_pending_and_dlq(redis_client: aioredis.Redis) -> None:
    registry = CollectorRegistry()
    publisher = Publisher(redis_client, producer="test", settings=BusSettings(), registry=registry)
    await redis_client.xgroup_create(STREAM, "g", id="0", mkstream=True)
    await publisher.publish_batch([(Pinged, Ping(n=i)) for i in range(10)])
    await redis_client.xreadgroup("g", "c", {STREAM: ">"}, count=4)  # 4 pending, 6 lag
    await redis_client.xadd(keys.dead_letter_stream(STREAM), {"reason": "poison"})
    monitor = StreamMonitor(redis_client, [(STREAM, "g")], interval_ms=100, registry=registry)
    await monitor.start()

    def gauge(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    try:
        await poll_until(
            lambda: _ready(gauge("astra_bus_pending_events", stream=STREAM, group="g")),
            "a sample",
            timeout=5,
        )
        assert gauge("astra_bus_stream_length", stream=STREAM) == 10
        assert gauge("astra_bus_group_lag", stream=STREAM, group="g") == 6
        assert gauge("astra_bus_pending_events", stream=STREAM, group="g") == 4
        assert gauge("astra_bus_dead_letter_length", stream=STREAM) == 1
        age = gauge("astra_bus_oldest_pending_age_seconds", stream=STREAM, group="g")
        assert age is not None
        assert age >= 0
    finally:
        await monitor.aclose()


async def _ready(value: float | None) -> bool:
    return value is not None


async def test_a_producer_reports_every_group_on_its_stream(
    redis_client: aioredis.Redis,
) -> None:
    """Group "" (a stream we publish): the consumer groups are seen from outside, so a
    consumer that is paused or cut off still has its lag and oldest pending reported."""
    registry = CollectorRegistry()
    publisher = Publisher(redis_client, producer="test", settings=BusSettings(), registry=registry)
    for group in ("stuck", "idle"):
        await redis_client.xgroup_create(STREAM, group, id="0", mkstream=True)
    await publisher.publish_batch([(Pinged, Ping(n=i)) for i in range(5)])
    await redis_client.xreadgroup("stuck", "c", {STREAM: ">"}, count=2)  # 2 pending, 3 lag
    monitor = StreamMonitor(redis_client, [(STREAM, "")], interval_ms=100, registry=registry)
    await monitor.start()

    def gauge(name: str, group: str) -> float | None:
        return registry.get_sample_value(name, {"stream": STREAM, "group": group})

    try:
        await poll_until(
            lambda: _ready(gauge("astra_bus_pending_events", "idle")), "a sample", timeout=5
        )
        assert gauge("astra_bus_group_lag", "stuck") == 3
        assert gauge("astra_bus_pending_events", "stuck") == 2
        assert gauge("astra_bus_group_lag", "idle") == 5
        assert gauge("astra_bus_pending_events", "idle") == 0
        # The pending entries age while nobody acks them.
        await poll_until(
            lambda: _above(gauge("astra_bus_oldest_pending_age_seconds", "stuck"), 0.2),
            "the oldest pending entry ageing",
            timeout=5,
        )
    finally:
        await monitor.aclose()


async def test_group_gauges_are_cleared_not_frozen_when_sampling_fails(
    redis_server: RedisServer,
) -> None:
    """A frozen "lag 0" from a process cut off from Redis would outvote the producer's
    true view in `max by (stream, group)`: the series go away instead."""
    client = aioredis.Redis.from_url(redis_server.url, socket_timeout=1)
    registry = CollectorRegistry()
    await client.xgroup_create(STREAM, "g", id="0", mkstream=True)
    await client.xadd(STREAM, {"x": "1"})
    monitor = StreamMonitor(client, [(STREAM, "g")], interval_ms=100, registry=registry)
    await monitor.start()
    labels = {"stream": STREAM, "group": "g"}
    try:
        await poll_until(
            lambda: _ready(registry.get_sample_value("astra_bus_group_lag", labels)),
            "a sample",
            timeout=5,
        )
        redis_server.stop()
        await poll_until(
            lambda: _gone(registry.get_sample_value("astra_bus_group_lag", labels)),
            "the lag series cleared once Redis is gone",
            timeout=10,
        )
        assert registry.get_sample_value("astra_bus_oldest_pending_age_seconds", labels) is None
    finally:
        await monitor.aclose()
        await client.aclose()


async def _above(value: float | None, floor: float) -> bool:
    return value is not None and value > floor


async def _gone(value: float | None) -> bool:
    return value is None
