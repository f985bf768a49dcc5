"""Sampled bus gauges read what Redis reports, and the monitor stops promptly."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from backbone import keys
from backbone.bus.monitor import StreamMonitor
from backbone.bus.publisher import Publisher
from backbone.config import BusSettings
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
