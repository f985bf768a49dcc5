"""The consumer's defence switches really switch their defence off (real redis-server).

A chaos drill run `--without-defence` must fail; it can only do so if turning a
setting off changes what the bus does. Each test runs the same scenario with the
defence on and off and shows the outcome differs:

  ASTRA_BUS__REAPER_ENABLED        a dead consumer's pending entries reclaimed / left for ever
  ASTRA_BUS__IDEMPOTENCY_MARKERS   an event delivered twice applied once / twice
"""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from backbone import keys
from backbone.bus.consumer import Consumer, Event, HandlerContext
from backbone.bus.envelope import decode, encode
from backbone.bus.publisher import Publisher
from backbone.config import BusSettings
from backbone.process import ProcessSettings
from tests.support.events import Ping, Pinged
from tests.support.poll import poll_until

pytestmark = pytest.mark.integration

FAST = BusSettings(batch_size=50, block_ms=50, claim_idle_ms=100, reaper_interval_ms=50)
STREAM = Pinged.stream_key
GROUP = "g"
ON_OFF = [pytest.param(True, id="defence-on"), pytest.param(False, id="defence-off")]


def test_defences_are_on_by_default_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert BusSettings().reaper_enabled is True
    assert BusSettings().idempotency_markers is True
    monkeypatch.setenv("ASTRA_REGISTRY__TOKEN", "registry-token-for-tests-0123456789")
    monkeypatch.setenv("ASTRA_BUS__REAPER_ENABLED", "false")
    monkeypatch.setenv("ASTRA_BUS__IDEMPOTENCY_MARKERS", "false")
    bus = ProcessSettings().bus
    assert (bus.reaper_enabled, bus.idempotency_markers) == (False, False)


class Recorder:
    """A handler with a Redis effect (INCR per event) that remembers what it saw."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def __call__(self, event: Event[Ping], ctx: HandlerContext) -> None:
        self.seen.append(event.data.n)
        ctx.effects.call("INCR", "applied")
        ctx.effects.call("HINCRBY", "per_event", event.event_id, 1)


def consumer(
    redis: aioredis.Redis,
    name: str,
    handler: Recorder,
    registry: CollectorRegistry,
    **settings: object,
) -> Consumer:
    return Consumer(
        redis,
        group=GROUP,
        consumer=name,
        handlers={Pinged: handler},
        settings=FAST.model_copy(update=settings),
        producer="test",
        registry=registry,
    )


async def publish(redis: aioredis.Redis, numbers: range) -> None:
    publisher = Publisher(redis, producer="test", settings=FAST, registry=CollectorRegistry())
    await publisher.publish_batch([(Pinged, Ping(n=n)) for n in numbers])


async def take_and_die(redis: aioredis.Redis, name: str) -> int:
    """What a consumer SIGKILLed mid-batch leaves: entries delivered to it, never acked."""
    response: Any = await redis.xreadgroup(GROUP, name, {STREAM: ">"}, count=100)
    return sum(len(entries) for _, entries in response)


async def pending_by_consumer(redis: aioredis.Redis) -> dict[str, int]:
    summary = await redis.xpending(STREAM, GROUP)
    return {c["name"].decode(): int(c["pending"]) for c in summary["consumers"]}


async def min_idle_ms(redis: aioredis.Redis) -> int:
    rows = await redis.xpending_range(STREAM, GROUP, min="-", max="+", count=1000)
    return min((int(r["time_since_delivered"]) for r in rows), default=0)


# --- ASTRA_BUS__REAPER_ENABLED ----------------------------------------------------


@pytest.mark.parametrize("reaper", ON_OFF)
async def test_a_dead_peers_pending_entries_are_reclaimed_only_with_the_reaper(
    redis_client: aioredis.Redis, reaper: bool
) -> None:
    registry = CollectorRegistry()
    await redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    await publish(redis_client, range(1, 6))
    assert await take_and_die(redis_client, "dead") == 5

    handler = Recorder()
    live = consumer(redis_client, "live", handler, registry, reaper_enabled=reaper)
    await live.start()
    try:
        await publish(redis_client, range(6, 7))  # proves the survivor is reading
        if reaper:
            await poll_until(
                lambda: _applied(redis_client, 6), "the dead peer's entries reclaimed", timeout=10
            )
            assert sorted(handler.seen) == [1, 2, 3, 4, 5, 6]
            assert await pending_by_consumer(redis_client) == {}
        else:
            # Long enough for the reaper to have claimed them many times over
            # (10x claim_idle_ms, 20 reaper intervals), had it been running.
            await poll_until(lambda: _applied(redis_client, 1), "the new event handled", 10)
            await poll_until(
                lambda: _idle_at_least(redis_client, 10 * FAST.claim_idle_ms),
                "the dead peer's entries to sit idle",
                timeout=10,
            )
            assert handler.seen == [6]
            assert await pending_by_consumer(redis_client) == {"dead": 5}  # lost for ever
    finally:
        await live.aclose()
    retried = registry.get_sample_value(
        "astra_bus_retried_events_total", {"stream": STREAM, "group": GROUP}
    )
    assert (retried or 0.0) == (5.0 if reaper else 0.0)
    assert await applied(redis_client) == (6 if reaper else 1)


@pytest.mark.parametrize("reaper", ON_OFF)
async def test_a_restarted_consumer_redelivers_its_own_pending_only_with_the_reaper(
    redis_client: aioredis.Redis, reaper: bool
) -> None:
    """The supervisor restarts a killed consumer under the same name: the switch covers that
    path too, or a drill that SIGKILLs a consumer would pass with the reaper off."""
    await redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    await publish(redis_client, range(1, 4))
    assert await take_and_die(redis_client, "gamification-1") == 3

    handler = Recorder()
    # The idle threshold is far away: only the restart drain can deliver them here.
    restarted = consumer(
        redis_client,
        "gamification-1",
        handler,
        CollectorRegistry(),
        reaper_enabled=reaper,
        claim_idle_ms=60_000,
    )
    await restarted.run(burst=True)
    assert sorted(handler.seen) == ([1, 2, 3] if reaper else [])
    assert await pending_by_consumer(redis_client) == ({} if reaper else {"gamification-1": 3})


@pytest.mark.parametrize("reaper", ON_OFF)
async def test_burst_mode_reclaims_idle_entries_only_with_the_reaper(
    redis_client: aioredis.Redis, reaper: bool
) -> None:
    await redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    await publish(redis_client, range(1, 4))
    assert await take_and_die(redis_client, "dead") == 3
    await poll_until(
        lambda: _idle_at_least(redis_client, FAST.claim_idle_ms), "entries idle", timeout=5
    )
    handler = Recorder()
    await consumer(redis_client, "live", handler, CollectorRegistry(), reaper_enabled=reaper).run(
        burst=True
    )
    assert sorted(handler.seen) == ([1, 2, 3] if reaper else [])
    assert await pending_by_consumer(redis_client) == ({} if reaper else {"dead": 3})


# --- ASTRA_BUS__IDEMPOTENCY_MARKERS -----------------------------------------------


@pytest.mark.parametrize("markers", ON_OFF)
async def test_an_event_delivered_twice_is_applied_once_only_with_markers(
    redis_client: aioredis.Redis, markers: bool
) -> None:
    """An outbox resend: the same envelope (same event_id) XADDed again, read in a later
    batch, and a third copy right behind the second one, in the same batch."""
    registry = CollectorRegistry()
    _, body = encode(Pinged, Ping(n=7), producer="test", correlation_id="c")
    handler = Recorder()

    await redis_client.xadd(STREAM, {keys.ENVELOPE_FIELD: body})
    first = consumer(redis_client, "c1", handler, registry, idempotency_markers=markers)
    await first.run(burst=True)
    for _ in range(2):
        await redis_client.xadd(STREAM, {keys.ENVELOPE_FIELD: body})
    again = consumer(redis_client, "c2", handler, CollectorRegistry(), idempotency_markers=markers)
    await again.run(burst=True)

    times = 1 if markers else 3
    assert await applied(redis_client) == times
    assert list((await redis_client.hgetall("per_event")).values()) == [str(times).encode()]
    assert len(handler.seen) == times  # markers on: the copies never reach the handler
    assert await pending_by_consumer(redis_client) == {}  # acked either way
    marker = keys.processed_marker(STREAM, GROUP, _event_id(body))
    assert bool(await redis_client.exists(marker)) is markers


@pytest.mark.parametrize("markers", ON_OFF)
async def test_a_reclaimed_event_a_peer_already_applied_is_applied_again_only_without_markers(
    redis_client: aioredis.Redis, markers: bool
) -> None:
    """The redelivery a reclaim makes: a slow consumer's entry claimed by a peer that
    applies it, then the copy published again by a relay that timed out (same event_id)."""
    _, body = encode(Pinged, Ping(n=1), producer="test", correlation_id="c")
    await redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    await redis_client.xadd(STREAM, {keys.ENVELOPE_FIELD: body})
    await redis_client.xadd(STREAM, {keys.ENVELOPE_FIELD: body})
    assert await take_and_die(redis_client, "slow") == 2  # both copies held by "slow"
    await poll_until(
        lambda: _idle_at_least(redis_client, FAST.claim_idle_ms), "entries idle", timeout=5
    )
    handler = Recorder()
    await consumer(
        redis_client, "peer", handler, CollectorRegistry(), idempotency_markers=markers
    ).run(burst=True)  # reclaims both copies in one XAUTOCLAIM batch
    assert await applied(redis_client) == (1 if markers else 2)
    assert await pending_by_consumer(redis_client) == {}


async def applied(redis: aioredis.Redis) -> int:
    """How many times the handlers' INCR effect was applied."""
    value = await redis.get("applied")
    return int(value) if value is not None else 0


async def _applied(redis: aioredis.Redis, n: int) -> bool:
    return await applied(redis) >= n


async def _idle_at_least(redis: aioredis.Redis, ms: int) -> bool:
    return await min_idle_ms(redis) >= ms


def _event_id(body: bytes) -> str:
    return decode(body).event_id
