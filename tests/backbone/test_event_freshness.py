"""The freshness SLI: `astra_bus_event_age_seconds` is observed once per handled event,
as handled time minus the envelope's `occurred_at`, and lands in the right bucket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from backbone import keys
from backbone.bus.consumer import Consumer, Event, HandlerContext
from backbone.bus.envelope import encode
from backbone.bus.metrics import FRESHNESS_BUCKETS
from backbone.config import BusSettings
from tests.support.events import Ping, Pinged

pytestmark = pytest.mark.integration

FAST = BusSettings(
    batch_size=50, block_ms=50, claim_idle_ms=100, reaper_interval_ms=50, max_deliveries=3
)
STREAM = Pinged.stream_key
AGE = "astra_bus_event_age_seconds"


def bucket(registry: CollectorRegistry, le: float) -> float:
    labels = {"stream": STREAM, "group": "g", "le": str(le)}
    return registry.get_sample_value(f"{AGE}_bucket", labels) or 0.0


async def test_an_old_event_lands_above_the_threshold(redis_client: aioredis.Redis) -> None:
    assert 2.0 in FRESHNESS_BUCKETS  # the freshness SLOs' threshold
    registry = CollectorRegistry()
    now = datetime.now(UTC)
    for n, age in ((1, timedelta(0)), (2, timedelta(seconds=3)), (3, timedelta(seconds=3))):
        _, body = encode(
            Pinged, Ping(n=n), producer="test", correlation_id=f"c{n}", occurred_at=now - age
        )
        await redis_client.xadd(STREAM, {keys.ENVELOPE_FIELD: body})

    async def handle(event: Event[Ping], ctx: HandlerContext) -> None:
        pass

    consumer = Consumer(
        redis_client, group="g", consumer="c1", handlers={Pinged: handle}, settings=FAST,
        producer="test", registry=registry,
    )  # fmt: skip
    await consumer.run(burst=True)
    labels = {"stream": STREAM, "group": "g"}
    assert registry.get_sample_value(f"{AGE}_count", labels) == 3
    assert bucket(registry, 2.0) == 1  # the fresh one
    assert bucket(registry, 1.0) == 1
    assert bucket(registry, 5.0) == 3  # the two 3-second-old ones
    assert 6.0 <= (registry.get_sample_value(f"{AGE}_sum", labels) or 0) < 7.0


async def test_a_failing_handler_observes_no_age(redis_client: aioredis.Redis) -> None:
    registry = CollectorRegistry()
    _, body = encode(Pinged, Ping(n=1), producer="test", correlation_id="c")
    await redis_client.xadd(STREAM, {keys.ENVELOPE_FIELD: body})

    async def handle(event: Event[Ping], ctx: HandlerContext) -> None:
        raise RuntimeError("boom")

    consumer = Consumer(
        redis_client, group="g", consumer="c1", handlers={Pinged: handle}, settings=FAST,
        producer="test", registry=registry,
    )  # fmt: skip
    await consumer.run(burst=True)
    labels = {"stream": STREAM, "group": "g"}
    assert (registry.get_sample_value(f"{AGE}_count", labels) or 0) == 0
