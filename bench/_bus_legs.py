"""The timed legs of `bench.bus`: the bus, raw redis-py and FastStream on the same work.

Every leg gets a fresh client, works on one stream of a private redis-server that
the caller flushes between legs, and returns a `Result`: events per second and this
process's CPU time per event. Payloads are built before the clock starts; only the
path under test is timed.

    publish:  Publisher.publish_batch / .publish    vs  pipelined / awaited XADD
    consume:  Consumer.run(burst=True)  vs  XREADGROUP+XACK loop  vs  FastStream StreamSub
"""

from __future__ import annotations

import cProfile
import gc
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from backbone import keys
from backbone.bus import envelope
from backbone.bus.consumer import Consumer, Event, HandlerContext
from backbone.bus.effects import Effects
from backbone.bus.envelope import Envelope
from backbone.bus.publisher import Publisher
from backbone.bus.streams import EventType, retention_for
from backbone.config import BusSettings


class TradeData(BaseModel):
    """A trade-sized payload (with its envelope, about 345 bytes of JSON)."""

    trade_id: int
    user_id: str
    symbol: str
    side: str
    quantity: float
    price: float
    sent_ns: int = 0  # time.monotonic_ns() at publish: CLOCK_MONOTONIC, one clock per host


Traded = EventType("bench", "trade_executed", 1, TradeData)
STREAM = Traded.stream_key
GROUP = "bench"
SETTINGS = BusSettings()  # as shipped: batch 100, MAXLEN ~ 100k, markers with a 7-day TTL
READ_BATCH = SETTINGS.batch_size
XADD_KWARGS = retention_for(SETTINGS, STREAM).xadd_kwargs()  # the bus's own trimming
FASTSTREAM_DATA_FIELD = "__data__"  # where FastStream keeps its framed message in an entry


class TradeEnvelope(Envelope):
    """The envelope with typed data: what a FastStream handler validates in one go."""

    data: TradeData  # type: ignore[assignment]


def trades(n: int) -> list[TradeData]:
    return [
        TradeData(
            trade_id=i,
            user_id=f"user-{i % 997}",
            symbol="BTC-USD",
            side="buy" if i % 2 else "sell",
            quantity=0.25 + i % 7,
            price=64_000.5 + i % 100,
        )
        for i in range(n)
    ]


@cache
def envelopes(n: int) -> tuple[bytes, ...]:
    """The exact bytes the bus publishes (what the raw legs send and the consumers read).

    Built once per size: every leg starts on a flushed database, so reusing the same
    event IDs across legs never meets an earlier leg's idempotency markers.
    """
    return tuple(
        envelope.encode(Traded, d, producer="bench", correlation_id="bench-run")[1]
        for d in trades(n)
    )


_framed: dict[int, list[dict[str, bytes]]] = {}


async def faststream_entries(n: int) -> list[dict[str, bytes]]:
    """The same envelopes framed as FastStream's own publisher frames them (JSON body)."""
    from faststream.redis.parser.binary import BinaryMessageFormatV1

    if n in _framed:
        return _framed[n]
    framed = _framed[n] = []
    for i, body in enumerate(envelopes(n)):
        payload = await BinaryMessageFormatV1.encode(
            message=body,
            reply_to=None,
            headers={"content-type": "application/json"},
            correlation_id=f"bench-{i}",
        )
        framed.append({FASTSTREAM_DATA_FIELD: payload})
    return framed


async def fill(redis: aioredis.Redis, entries: Sequence[dict[str, bytes]]) -> None:
    """Load a stream (untimed) and create the group at its start."""
    for i in range(0, len(entries), 1000):
        pipe = redis.pipeline(transaction=False)
        for fields in entries[i : i + 1000]:
            pipe.xadd(STREAM, fields, **XADD_KWARGS)  # type: ignore[arg-type]
        await pipe.execute()
    await redis.xgroup_create(STREAM, GROUP, id="0")


async def pending(redis: aioredis.Redis) -> int:
    return int((await redis.xpending(STREAM, GROUP))["pending"])


@dataclass
class Result:
    eps: float  # events per second, wall clock
    cpu_us: float  # this process's CPU time per event (user + system), in microseconds
    spent: dict[str, float] = field(default_factory=dict)  # seconds per stage (TimedConsumer)


class Stopwatch:
    """Wall and CPU time of one leg; starts on a clean heap so collecting the inputs is free."""

    def __init__(self) -> None:
        gc.collect()
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def result(self, n: int) -> Result:
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() - self.cpu
        return Result(n / wall, cpu / n * 1e6, {"total": wall})


# --- publish ----------------------------------------------------------------


def _publisher(redis: aioredis.Redis) -> Publisher:
    return Publisher(redis, producer="bench", settings=SETTINGS, registry=CollectorRegistry())


async def publish_batch_bus(redis: aioredis.Redis, n: int, batch: int) -> Result:
    publisher = _publisher(redis)
    items: list[tuple[EventType[Any], BaseModel]] = [(Traded, d) for d in trades(n)]
    watch = Stopwatch()
    for i in range(0, n, batch):
        await publisher.publish_batch(items[i : i + batch])
    return watch.result(n)


async def publish_batch_raw(redis: aioredis.Redis, n: int, batch: int) -> Result:
    bodies = envelopes(n)
    watch = Stopwatch()
    for i in range(0, n, batch):
        pipe = redis.pipeline(transaction=False)
        for body in bodies[i : i + batch]:
            pipe.xadd(STREAM, {keys.ENVELOPE_FIELD: body}, **XADD_KWARGS)
        await pipe.execute()
    return watch.result(n)


async def publish_single_bus(redis: aioredis.Redis, n: int) -> Result:
    publisher = _publisher(redis)
    data = trades(n)
    watch = Stopwatch()
    for d in data:
        await publisher.publish(Traded, d)
    return watch.result(n)


async def publish_single_raw(redis: aioredis.Redis, n: int) -> Result:
    bodies = envelopes(n)
    watch = Stopwatch()
    for body in bodies:
        await redis.xadd(STREAM, {keys.ENVELOPE_FIELD: body}, **XADD_KWARGS)
    return watch.result(n)


# --- consume ----------------------------------------------------------------


async def _noop(event: Event[TradeData], ctx: HandlerContext) -> None:
    return None


class NoMarkersConsumer(Consumer):
    """The shipped consumer minus idempotency markers (one plain XACK per batch).

    Bench only: it shows what the markers cost, it is not a supported mode.
    """

    async def _already_processed(self, stream: str, events: list[Event[Any]]) -> set[str]:
        return set()

    async def _commit_batch(
        self,
        stream: str,
        fkey: str,
        commits: list[tuple[str, str, bool, Effects | None]],
        *_: Any,  # older kernels also passed the batch's duplicates
    ) -> list[tuple[str, str]]:
        await self.redis.xack(stream, self.group, *[entry_id for _, entry_id, _, _ in commits])
        return []


class TimedConsumer(Consumer):
    """The shipped consumer with stopwatches around its stages (for the cost breakdown)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spent: defaultdict[str, float] = defaultdict(float)

    async def _process(self, stream: str, entries: Any, *, redelivered: bool) -> None:
        started = time.perf_counter()
        try:
            await super()._process(stream, entries, redelivered=redelivered)
        finally:
            self.spent["process"] += time.perf_counter() - started

    def _decode(self, *args: Any) -> Event[Any]:
        started = time.perf_counter()
        try:
            return super()._decode(*args)
        finally:
            self.spent["decode + validate"] += time.perf_counter() - started

    async def _handle(self, *args: Any) -> Effects | str:
        started = time.perf_counter()
        try:
            return await super()._handle(*args)
        finally:
            self.spent["handler wrapper (span, context, histogram)"] += (
                time.perf_counter() - started
            )

    async def _already_processed(self, stream: str, events: list[Event[Any]]) -> set[str]:
        started = time.perf_counter()
        try:
            return await super()._already_processed(stream, events)
        finally:
            self.spent["marker check (MGET)"] += time.perf_counter() - started

    async def _commit_batch(self, *args: Any) -> list[tuple[str, str]]:
        started = time.perf_counter()
        try:
            return await super()._commit_batch(*args)
        finally:
            self.spent["commit (Lua: SET NX EX + XACK)"] += time.perf_counter() - started


async def consume_bus(
    redis: aioredis.Redis,
    n: int,
    cls: type[Consumer] = Consumer,
    profiler: cProfile.Profile | None = None,
    tracer: trace.Tracer | None = None,
) -> Result:
    await fill(redis, [{keys.ENVELOPE_FIELD: b} for b in envelopes(n)])
    handled = 0

    async def handle(event: Event[TradeData], ctx: HandlerContext) -> None:
        nonlocal handled
        handled += 1

    consumer = cls(
        redis,
        group=GROUP,
        consumer="bus-1",
        handlers={Traded: handle},
        settings=SETTINGS,
        producer="bench",
        registry=CollectorRegistry(),
        tracer=tracer,
    )
    watch = Stopwatch()
    if profiler is not None:
        profiler.enable()
    await consumer.run(burst=True)
    if profiler is not None:
        profiler.disable()
    result = watch.result(n)
    _check(handled, n, await pending(redis))
    result.spent.update(getattr(consumer, "spent", {}))
    return result


async def consume_raw(redis: aioredis.Redis, n: int, *, validate: bool = False) -> Result:
    """XREADGROUP > COUNT 100, a no-op call per entry, one XACK per batch.

    `validate=True` also validates each envelope with its typed data in one pydantic
    call: the floor for any consumer that checks what it reads.
    """
    await fill(redis, [{keys.ENVELOPE_FIELD: b} for b in envelopes(n)])
    handled = 0
    field_name = keys.ENVELOPE_FIELD.encode()

    async def handle(fields: dict[bytes, bytes]) -> None:
        nonlocal handled
        if validate:
            TradeEnvelope.model_validate_json(fields[field_name])
        handled += 1

    watch = Stopwatch()
    while True:
        response = await redis.xreadgroup(GROUP, "raw-1", {STREAM: ">"}, count=READ_BATCH)
        if not response:
            break
        entries = entries_of(response)
        for _, fields in entries:
            await handle(fields)
        await redis.xack(STREAM, GROUP, *[entry_id for entry_id, _ in entries])
    result = watch.result(n)
    _check(handled, n, await pending(redis))
    return result


async def consume_faststream(url: str, redis: aioredis.Redis, n: int, *, batch: bool) -> Result:
    """FastStream's StreamSub in a consumer group, acking after success (its default).

    The handler takes the envelope as a pydantic model with typed data, so FastStream
    validates what the bus validates. Its per-message log lines are off (`logger=None`),
    as the bus logs nothing per event either.
    """
    import asyncio

    from faststream.redis import RedisBroker, StreamSub

    await fill(redis, await faststream_entries(n))
    broker = RedisBroker(url, logger=None)  # type: ignore[arg-type]  # None: no logging
    done = asyncio.Event()
    handled = 0

    def count(k: int) -> None:
        nonlocal handled
        handled += k
        if handled >= n:
            done.set()

    sub = StreamSub(STREAM, group=GROUP, consumer="fs-1", max_records=READ_BATCH, batch=batch)
    if batch:

        @broker.subscriber(stream=sub)  # type: ignore[untyped-decorator]
        async def handle_batch(bodies: list[TradeEnvelope]) -> None:
            count(len(bodies))

    else:

        @broker.subscriber(stream=sub)  # type: ignore[untyped-decorator]
        async def handle_one(body: TradeEnvelope) -> None:
            count(1)

    watch = Stopwatch()
    await broker.start()
    try:
        await asyncio.wait_for(done.wait(), timeout=120)
        for _ in range(100_000):  # the last XACK follows the last handler call
            if not await pending(redis):
                break
            await asyncio.sleep(0)
        result = watch.result(n)
    finally:
        await broker.stop()
    _check(handled, n, await pending(redis))
    return result


def sampling_tracer() -> trace.Tracer:
    """An SDK tracer sampling every trace (TelemetrySettings' default ratio), exporting nothing.

    It prices span creation only; a real exporter adds its own thread's work.
    """
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(1.0)))
    return provider.get_tracer("bench.bus")


def entries_of(response: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    # [[stream, [(id, fields), ...]]] with RESP2, {stream: [[(id, fields), ...]]} with RESP3
    if isinstance(response, dict):
        return [entry for entries in response.values() for entry in entries[0]]
    return [entry for _, entries in response for entry in entries]


def _check(handled: int, expected: int, left_pending: int) -> None:
    if handled != expected or left_pending:
        raise RuntimeError(f"handled {handled}/{expected}, {left_pending} left pending")
