"""The consumer's guarantees, each proven against a real redis-server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from backbone import keys
from backbone.bus.consumer import Consumer, Event, HandlerContext
from backbone.bus.envelope import encode
from backbone.bus.publisher import Publisher
from backbone.config import BusSettings
from tests.support.events import Ping, Pinged, Pong, Ponged
from tests.support.poll import poll_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FAST = BusSettings(
    batch_size=50, block_ms=50, claim_idle_ms=100, reaper_interval_ms=50, max_deliveries=3
)
STREAM = Pinged.stream_key


def publisher(redis: aioredis.Redis, registry: CollectorRegistry) -> Publisher:
    return Publisher(redis, producer="test", settings=FAST, registry=registry)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def pending(redis: aioredis.Redis, group: str = "g") -> int:
    summary = await redis.xpending(STREAM, group)
    return int(summary["pending"])


async def test_events_reach_the_handler_typed_and_are_acked(redis_client: aioredis.Redis) -> None:
    registry = CollectorRegistry()
    seen: list[tuple[int, int]] = []

    async def handle(event: Event[Ping], ctx: HandlerContext) -> None:
        seen.append((event.data.n, event.attempt))
        ctx.effects.call("INCRBY", "sum", event.data.n)

    await publisher(redis_client, registry).publish_batch(
        [(Pinged, Ping(n=i)) for i in range(1, 11)]
    )
    consumer = Consumer(
        redis_client, group="g", consumer="c1", handlers={Pinged: handle}, settings=FAST,
        producer="test", registry=registry,
    )  # fmt: skip
    await consumer.run(burst=True)
    assert seen == [(i, 1) for i in range(1, 11)]
    assert int(await redis_client.get("sum")) == 55
    assert await pending(redis_client) == 0
    assert value(registry, "astra_bus_consumed_events_total", stream=STREAM, group="g") == 10
    assert value(registry, "astra_bus_published_events_total", stream=STREAM, path="direct") == 10


async def test_a_redelivered_event_has_its_effect_once(redis_client: aioredis.Redis) -> None:
    """The same envelope XADDed twice (an outbox retry) is applied once."""
    registry = CollectorRegistry()
    _, body = encode(Pinged, Ping(n=7), producer="test", correlation_id="c")
    for _ in range(3):
        await redis_client.xadd(STREAM, {keys.ENVELOPE_FIELD: body})
    calls = 0

    async def handle(event: Event[Ping], ctx: HandlerContext) -> None:
        nonlocal calls
        calls += 1
        ctx.effects.call("INCR", "applied")

    consumer = Consumer(
        redis_client, group="g", consumer="c1", handlers={Pinged: handle}, settings=FAST,
        producer="test", registry=registry,
    )  # fmt: skip
    await consumer.run(burst=True)
    assert int(await redis_client.get("applied")) == 1
    assert await pending(redis_client) == 0
    assert value(registry, "astra_bus_duplicate_events_total", stream=STREAM, group="g") == 2
    assert calls == 1  # later copies in the same batch are recognised too


async def test_failing_handler_goes_to_dlq_after_max_deliveries(
    redis_client: aioredis.Redis,
) -> None:
    registry = CollectorRegistry()
    attempts: list[int] = []

    async def handle(event: Event[Ping], ctx: HandlerContext) -> None:
        if event.data.n == 2:
            attempts.append(event.attempt)
            ctx.effects.call("INCR", "should-never-apply")
            raise RuntimeError("boom on 2")
        ctx.effects.call("INCR", "ok")

    await publisher(redis_client, registry).publish_batch([(Pinged, Ping(n=i)) for i in (1, 2, 3)])
    consumer = Consumer(
        redis_client, group="g", consumer="c1", handlers={Pinged: handle}, settings=FAST,
        producer="test", registry=registry,
    )  # fmt: skip
    await consumer.start()
    try:
        dlq = keys.dead_letter_stream(STREAM)
        await poll_until(lambda: redis_client.xlen(dlq), "the failing event in the DLQ", 10)
    finally:
        await consumer.aclose()
    assert attempts == [1, 2, 3]  # real handler failures counted, not re-reads
    [(_, fields)] = await redis_client.xrange(dlq)
    assert fields[b"reason"] == b"failures"
    assert fields[b"group"] == b"g"
    assert fields[b"attempts"] == b"3"
    assert b"boom on 2" in fields[b"error"]
    assert b'"n":2' in fields[b"envelope"].replace(b" ", b"")
    assert int(await redis_client.get("ok")) == 2
    assert await redis_client.get("should-never-apply") is None
    assert await pending(redis_client) == 0
    assert value(registry, "astra_bus_handler_failures_total", stream=STREAM, group="g") == 3
    dead = value(
        registry,
        "astra_bus_dead_lettered_events_total",
        stream=STREAM,
        group="g",
        reason="failures",
    )
    assert dead == 1
    assert await redis_client.hlen(keys.failure_counts(STREAM, "g")) == 0


async def test_poison_entries_go_to_dlq_and_never_block(redis_client: aioredis.Redis) -> None:
    registry = CollectorRegistry()
    await redis_client.xadd(STREAM, {keys.ENVELOPE_FIELD: b"{not json"})
    await redis_client.xadd(STREAM, {b"other": b"field"})
    _, wrong_version = encode(Ponged, Pong(n=1), producer="test", correlation_id="c")
    await redis_client.xadd(STREAM, {keys.ENVELOPE_FIELD: wrong_version})
    _, bad_data = encode(Pinged, Ping(n=1), producer="test", correlation_id="c")
    await redis_client.xadd(STREAM, {keys.ENVELOPE_FIELD: bad_data.replace(b'"n":1', b'"n":"x"')})
    await publisher(redis_client, registry).publish(Pinged, Ping(n=42))
    handled: list[int] = []

    async def handle(event: Event[Ping], ctx: HandlerContext) -> None:
        handled.append(event.data.n)

    consumer = Consumer(
        redis_client, group="g", consumer="c1", handlers={Pinged: handle}, settings=FAST,
        producer="test", registry=registry,
    )  # fmt: skip
    await consumer.run(burst=True)
    assert handled == [42]
    dead = await redis_client.xrange(keys.dead_letter_stream(STREAM))
    reasons = [fields[b"error"].decode() for _, fields in dead]
    assert len(dead) == 4
    assert all(fields[b"reason"] == b"poison" for _, fields in dead)
    assert "invalid envelope" in reasons[0]
    assert "no 'envelope' field" in reasons[1]
    assert "test.ponged v1" in reasons[2]
    assert "invalid data" in reasons[3]
    assert await pending(redis_client) == 0


def test_the_alerted_counters_exist_at_zero_before_anything_happens(
    redis_client: aioredis.Redis,
) -> None:
    """`increase()` sees nothing of a series born at its first increment, so the dead
    letter and trimmed-entry counters must be exported at 0 from the start (found: a
    drill dead-lettered 20 poison entries and BusDeadLettersGrowing never fired)."""
    registry = CollectorRegistry()

    async def handle(event: Event[Ping], ctx: HandlerContext) -> None:
        pass

    Consumer(
        redis_client, group="g", consumer="c1", handlers={Pinged: handle}, settings=FAST,
        producer="test", registry=registry,
    )  # fmt: skip
    dead = "astra_bus_dead_lettered_events_total"
    for reason in ("poison", "unknown_producer", "failures", "effect_error"):
        labels = {"stream": STREAM, "group": "g", "reason": reason}
        assert registry.get_sample_value(dead, labels) == 0.0, reason
    trimmed = "astra_bus_trimmed_before_ack_total"
    assert registry.get_sample_value(trimmed, {"stream": STREAM, "group": "g"}) == 0.0


async def test_pending_entries_trimmed_away_are_counted_as_lost_not_dead_lettered(
    redis_client: aioredis.Redis,
) -> None:
    """A consumer killed with a batch pending, the stream trimmed before it restarts:
    the restarted consumer finds its entries gone, counts each (BusEventsTrimmedBeforeAck)
    and acks it; none is misfiled as poison (found: redis-py returns {} for a deleted
    entry, not None, and the drain dead-lettered it)."""
    registry = CollectorRegistry()
    await redis_client.xgroup_create(STREAM, "g", id="0", mkstream=True)
    await publisher(redis_client, registry).publish_batch([(Pinged, Ping(n=i)) for i in range(3)])
    held = await redis_client.xreadgroup("g", "c1", {STREAM: ">"}, count=2)  # then "killed"
    last = held[0][1][-1][0].decode()
    ms, seq = last.split("-")
    await redis_client.xtrim(STREAM, minid=f"{ms}-{int(seq) + 1}", approximate=False)
    handled: list[int] = []

    async def handle(event: Event[Ping], ctx: HandlerContext) -> None:
        handled.append(event.data.n)

    consumer = Consumer(
        redis_client, group="g", consumer="c1", handlers={Pinged: handle}, settings=FAST,
        producer="test", registry=registry,
    )  # fmt: skip
    await consumer.run(burst=True)
    assert handled == [2]  # the one entry the trim left
    labels = {"stream": STREAM, "group": "g"}
    assert value(registry, "astra_bus_trimmed_before_ack_total", **labels) == 2
    assert await redis_client.xlen(keys.dead_letter_stream(STREAM)) == 0
    assert await pending(redis_client) == 0


async def test_context_publish_is_atomic_with_the_ack(redis_client: aioredis.Redis) -> None:
    registry = CollectorRegistry()
    await publisher(redis_client, registry).publish(Pinged, Ping(n=5))
    fail = True

    async def handle(event: Event[Ping], ctx: HandlerContext) -> None:
        ctx.publish(Ponged, Pong(n=event.data.n * 2))
        if fail:
            raise RuntimeError("transient")

    consumer = Consumer(
        redis_client, group="g", consumer="c1", handlers={Pinged: handle}, settings=FAST,
        producer="test", registry=registry,
    )  # fmt: skip
    await consumer.run(burst=True)
    assert await redis_client.xlen(Ponged.stream_key) == 0  # failed handler: nothing published
    fail = False
    await poll_until(
        lambda: _reap_and_count(consumer, redis_client), "the retried publish", timeout=5
    )
    [(_, fields)] = await redis_client.xrange(Ponged.stream_key)
    assert b'"n":10' in fields[b"envelope"]


async def _reap_and_count(consumer: Consumer, redis: aioredis.Redis) -> int:
    await consumer.run(burst=True)
    return int(await redis.xlen(Ponged.stream_key))


async def test_own_pending_entries_are_drained_first_on_restart(
    redis_client: aioredis.Redis,
) -> None:
    registry = CollectorRegistry()
    await publisher(redis_client, registry).publish_batch([(Pinged, Ping(n=i)) for i in range(5)])
    await redis_client.xgroup_create(STREAM, "g", id="0")
    # Delivered to c1 but never acked: what a crashed c1 leaves behind.
    await redis_client.xreadgroup("g", "c1", {STREAM: ">"}, count=5)
    handled: list[int] = []

    async def handle(event: Event[Ping], ctx: HandlerContext) -> None:
        handled.append(event.data.n)

    slow_reaper = FAST.model_copy(update={"claim_idle_ms": 60_000})
    consumer = Consumer(
        redis_client, group="g", consumer="c1", handlers={Pinged: handle}, settings=slow_reaper,
        producer="test", registry=registry,
    )  # fmt: skip
    await consumer.run(burst=True)
    assert handled == [0, 1, 2, 3, 4]
    assert await pending(redis_client) == 0


def _spawn(url: str, name: str, crash_at: int = 0, delay_ms: int = 0) -> subprocess.Popen[bytes]:
    child = ROOT / "tests" / "backbone" / "bus_child.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(child), url, name, str(crash_at), str(delay_ms)], env=env
    )


async def test_kill_9_mid_batch_loses_nothing_and_applies_nothing_twice(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    total = 300
    registry = CollectorRegistry()
    await redis_client.xgroup_create(STREAM, "g", id="0", mkstream=True)
    await publisher(redis_client, registry).publish_batch(
        [(Pinged, Ping(n=i)) for i in range(1, total + 1)]
    )
    victim = _spawn(redis_url, "victim", crash_at=125)  # mid way through its third batch
    try:
        assert victim.wait(30) == -signal.SIGKILL
    finally:
        victim.kill()
    assert await pending(redis_client) > 0  # handled-but-unacked work left behind
    handled_before = int(await redis_client.get("test:handled") or 0)
    assert handled_before >= 124  # the batch in flight had been handled in part

    survivor = _spawn(redis_url, "survivor")
    try:
        await poll_until(
            lambda: _all_acked(redis_client, total), "every event applied and acked", timeout=30
        )
    finally:
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(15) == 0
    per_event = await redis_client.hgetall("test:per_event")
    assert len(per_event) == total
    assert set(per_event.values()) == {b"1"}  # exactly once each
    assert int(await redis_client.get("test:applied")) == total
    # The handler ran again for the events whose effects were lost with the kill.
    assert int(await redis_client.get("test:handled")) > total


async def _all_acked(redis: aioredis.Redis, total: int) -> bool:
    applied = int(await redis.get("test:applied") or 0)
    return applied == total and await pending(redis) == 0


async def test_sigterm_commits_what_was_handled_and_loses_nothing(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    total = 400
    registry = CollectorRegistry()
    await redis_client.xgroup_create(STREAM, "g", id="0", mkstream=True)
    await publisher(redis_client, registry).publish_batch(
        [(Pinged, Ping(n=i)) for i in range(1, total + 1)]
    )
    child = _spawn(redis_url, "graceful", delay_ms=2)
    try:
        await poll_until(
            lambda: _handled_at_least(redis_client, 60), "the child to be mid-stream", timeout=20
        )
        child.send_signal(signal.SIGTERM)
        assert child.wait(15) == 0
    finally:
        child.kill()
    assert await redis_client.get("test:stopped:graceful") == b"1"
    # It stopped mid-batch: what it had handled was committed and acked; the rest of
    # that batch (fewer than one batch) stays pending for this consumer name.
    assert await pending(redis_client) < 50
    applied = int(await redis_client.get("test:applied"))
    assert 60 <= applied < total
    assert int(await redis_client.get("test:handled")) == applied  # no handler run was wasted

    rest = _spawn(redis_url, "graceful")
    try:
        await poll_until(lambda: _all_acked(redis_client, total), "the rest", timeout=30)
    finally:
        rest.send_signal(signal.SIGTERM)
        rest.wait(15)
    per_event = await redis_client.hgetall("test:per_event")
    assert len(per_event) == total
    assert set(per_event.values()) == {b"1"}


async def _handled_at_least(redis: aioredis.Redis, n: int) -> bool:
    return int(await redis.get("test:handled") or 0) >= n


async def test_consumer_survives_a_redis_restart(redis_factory: Any) -> None:
    server = redis_factory()
    client = aioredis.Redis.from_url(server.url)
    registry = CollectorRegistry()
    handled: list[int] = []

    async def handle(event: Event[Ping], ctx: HandlerContext) -> None:
        handled.append(event.data.n)

    consumer = Consumer(
        client, group="g", consumer="c1", handlers={Pinged: handle}, settings=FAST,
        producer="test", registry=registry,
    )  # fmt: skip
    await consumer.start()
    try:
        await publisher(client, registry).publish(Pinged, Ping(n=1))
        await poll_until(lambda: _async(handled == [1]), "first event", timeout=5)
        server.kill()
        await poll_until(lambda: _async(consumer.last_error is not None), "error noticed", 5)
        redis_factory(port=server.port)  # an empty Redis on the same port
        await poll_until(lambda: _publish_ok(client, registry), "redis back", timeout=10)
        await poll_until(lambda: _async(2 in handled), "event after the restart", timeout=10)
        assert consumer.running
    finally:
        await consumer.aclose()
        await client.aclose()


async def _publish_ok(client: aioredis.Redis, registry: CollectorRegistry) -> bool:
    try:
        await publisher(client, registry).publish(Pinged, Ping(n=2))
    except Exception:
        return False
    return True


async def _async(value: bool) -> bool:
    await asyncio.sleep(0)
    return value


@pytest.mark.parametrize(("commit_each", "expected"), [(True, [0, 1, 2, 3]), (False, [0, 0, 0, 0])])
async def test_commit_each_lets_handlers_read_their_own_writes(
    redis_client: aioredis.Redis, commit_each: bool, expected: list[int]
) -> None:
    registry = CollectorRegistry()
    await publisher(redis_client, registry).publish_batch([(Pinged, Ping(n=i)) for i in range(4)])
    seen: list[int] = []

    async def handle(event: Event[Ping], ctx: HandlerContext) -> None:
        seen.append(int(await redis_client.get("count") or 0))
        ctx.effects.call("INCR", "count")

    consumer = Consumer(
        redis_client, group="g", consumer="c1", handlers={Pinged: handle}, settings=FAST,
        producer="test", commit_each=commit_each, registry=registry,
    )  # fmt: skip
    await consumer.run(burst=True)
    assert seen == expected
    assert int(await redis_client.get("count")) == 4
    assert await pending(redis_client) == 0


async def test_an_effect_redis_refuses_goes_to_the_dlq_not_consumed(
    redis_client: aioredis.Redis,
) -> None:
    registry = CollectorRegistry()
    await redis_client.set("not-a-hash", "x")
    await publisher(redis_client, registry).publish_batch([(Pinged, Ping(n=i)) for i in (1, 2, 3)])

    async def handle(event: Event[Ping], ctx: HandlerContext) -> None:
        ctx.effects.call("INCR", f"count:{event.data.n}")
        if event.data.n == 2:
            ctx.effects.call("HINCRBY", "not-a-hash", "f", 1)  # WRONGTYPE at commit
            ctx.effects.call("INCR", "after:2")

    consumer = Consumer(
        redis_client, group="g", consumer="c1", handlers={Pinged: handle}, settings=FAST,
        producer="test", registry=registry,
    )  # fmt: skip
    await consumer.run(burst=True)
    assert await pending(redis_client) == 0
    [(_, fields)] = await redis_client.xrange(keys.dead_letter_stream(STREAM))
    assert fields[b"reason"] == b"effect_error"
    assert b"WRONGTYPE" in fields[b"error"]
    assert b'"n":2' in fields[b"envelope"]
    # Redis cannot roll back what ran before the failing command; nothing after it ran,
    # and the events around it were applied and consumed.
    assert await redis_client.get("after:2") is None
    assert await redis_client.get("count:1") == b"1"
    assert await redis_client.get("count:3") == b"1"
    assert value(registry, "astra_bus_consumed_events_total", stream=STREAM, group="g") == 2


def test_effect_arguments_are_checked_in_the_handler() -> None:
    from backbone.bus.effects import Effects

    effects = Effects()
    effects.call("SET", "k", 1, 2.5, b"x")
    for bad in (True, None, {"a": 1}):
        with pytest.raises(TypeError):
            effects.call("SET", "k", bad)  # type: ignore[arg-type]
    assert len(effects) == 1
