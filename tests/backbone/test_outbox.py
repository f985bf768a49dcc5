"""The transactional outbox on real SQLite files, PostgreSQL (when reachable) and redis-server."""

from __future__ import annotations

import fcntl
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff, NoBackoff
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from backbone import keys
from backbone.bus.envelope import decode
from backbone.bus.streams import EventType
from backbone.config import BusSettings
from backbone.errors import OutboxError
from backbone.outbox import Outbox, OutboxRelay, outbox_table
from backbone.outbox._lock import advisory_key, sqlite_file
from backbone.telemetry.correlation import (
    reset_causation_id,
    reset_correlation_id,
    set_causation_id,
    set_correlation_id,
)
from stack.redis_server import RedisServer
from tests.support.poll import poll_until

pytestmark = pytest.mark.integration


class Placed(BaseModel):
    order_id: int


class Filled(BaseModel):
    order_id: int


# Published by the outbox under the "trading" producer name, as a service would.
OrderPlaced = EventType("outboxtest", "order_placed", 1, Placed, producers=("trading",))
OrderFilled = EventType("outboxtest", "order_filled", 1, Filled, producers=("trading",))
PLACED, FILLED = OrderPlaced.stream_key, OrderFilled.stream_key


# --- a service database: one domain table and the outbox in one MetaData ------


@dataclass
class Db:
    engine: AsyncEngine
    outbox: Table
    orders: Table

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return async_sessionmaker(self.engine, expire_on_commit=False)

    async def scalar(self, stmt: Any) -> Any:
        async with self.engine.connect() as conn:
            return await conn.scalar(stmt)

    async def unsent(self) -> int:
        t = self.outbox
        return int(await self.scalar(select(func.count()).where(t.c.sent_at.is_(None))))

    async def sent(self) -> int:
        t = self.outbox
        return int(await self.scalar(select(func.count()).where(t.c.sent_at.is_not(None))))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Db]:
    schema: str | None = None
    if request.param == "sqlite":
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'service.db'}")
    else:
        engine = create_async_engine(request.getfixturevalue("postgres_url"))
        schema = f"outbox_test_{uuid.uuid4().hex[:12]}"  # private to this test
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    metadata = MetaData(schema=schema)
    orders = Table(
        "orders",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("symbol", String(16), nullable=False),
    )
    table = outbox_table(metadata)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        yield Db(engine, table, orders)
    finally:
        if schema is not None:
            async with engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client that fails fast while Redis is down: the relay does the retrying."""
    client = aioredis.Redis.from_url(
        redis_server.url, retry=Retry(NoBackoff(), 1), socket_connect_timeout=1, socket_timeout=2
    )
    yield client
    await client.aclose()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def make_relay(
    db: Db, redis: aioredis.Redis, registry: CollectorRegistry
) -> AsyncIterator[Callable[..., OutboxRelay]]:
    relays: list[OutboxRelay] = []

    def make(**kwargs: Any) -> OutboxRelay:
        kwargs.setdefault("backoff", EqualJitterBackoff(cap=0.2, base=0.02))
        kwargs.setdefault("close_timeout", 2.0)
        relay = OutboxRelay(db.engine, db.outbox, redis, BusSettings(), registry=registry, **kwargs)
        relays.append(relay)
        return relay

    yield make
    for relay in relays:
        await relay.aclose()


# --- helpers -------------------------------------------------------------------


async def commit_events(
    db: Db, outbox: Outbox, order_ids: range, *, per_tx: int = 1
) -> dict[str, list[str]]:
    """Commit an order row and its event per id (placed; every third also filled)."""
    written: dict[str, list[str]] = {PLACED: [], FILLED: []}
    ids = list(order_ids)
    for start in range(0, len(ids), per_tx):
        async with db.sessions() as session, session.begin():
            for oid in ids[start : start + per_tx]:
                await session.execute(insert(db.orders).values(id=oid, symbol="BTC-USD"))
                written[PLACED].append(await outbox.add(session, OrderPlaced, Placed(order_id=oid)))
                if oid % 3 == 0:
                    eid = await outbox.add(session, OrderFilled, Filled(order_id=oid))
                    written[FILLED].append(eid)
    return written


async def entries_of(redis: aioredis.Redis, stream: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(stream))


async def stream_event_ids(redis: aioredis.Redis, stream: str) -> list[str]:
    entries = await entries_of(redis, stream)
    for _, fields in entries:
        assert list(fields) == [keys.ENVELOPE_FIELD.encode()]
    return [decode(fields[keys.ENVELOPE_FIELD.encode()]).event_id for _, fields in entries]


def counter(registry: CollectorRegistry, name: str, stream: str) -> float:
    value = registry.get_sample_value(name, {"stream": stream, "path": "outbox"})
    return value or 0.0


# --- tests ---------------------------------------------------------------------


async def test_event_commits_and_rolls_back_with_the_domain_change(db: Db) -> None:
    outbox = Outbox(db.outbox, producer="trading")
    async with db.sessions() as session, session.begin():
        await session.execute(insert(db.orders).values(id=1, symbol="BTC-USD"))
        event_id = await outbox.add(session, OrderPlaced, Placed(order_id=1))

    async with db.sessions() as session:
        await session.begin()
        await session.execute(insert(db.orders).values(id=2, symbol="ETH-USD"))
        await outbox.add(session, OrderPlaced, Placed(order_id=2))
        await session.rollback()

    # A Core connection works the same way.
    async with db.engine.begin() as conn:
        await conn.execute(insert(db.orders).values(id=3, symbol="SOL-USD"))
        other_id = await outbox.add(conn, OrderFilled, Filled(order_id=3))

    async with db.engine.connect() as conn:
        assert (await conn.scalars(select(db.orders.c.id).order_by("id"))).all() == [1, 3]
        rows = (await conn.execute(select(db.outbox).order_by(db.outbox.c.id))).all()
    assert [(r.event_id, r.stream, r.sent_at, r.attempts) for r in rows] == [
        (event_id, PLACED, None, 0),
        (other_id, FILLED, None, 0),
    ]
    assert rows[0].created_at.tzinfo is not None
    envelope = decode(rows[0].envelope)
    assert (envelope.event_id, envelope.type, envelope.producer) == (
        event_id,
        "outboxtest.order_placed",
        "trading",
    )
    assert envelope.data == {"order_id": 1}


async def test_relay_publishes_each_row_to_its_stream_then_marks_it_sent(
    db: Db,
    redis: aioredis.Redis,
    make_relay: Callable[..., OutboxRelay],
    registry: CollectorRegistry,
) -> None:
    outbox = Outbox(db.outbox, producer="trading")
    written = await commit_events(db, outbox, range(1, 7), per_tx=2)  # 6 placed, 2 filled
    relay = make_relay()
    assert await relay.relay_once() == 8

    assert await stream_event_ids(redis, PLACED) == written[PLACED]
    assert await stream_event_ids(redis, FILLED) == written[FILLED]
    assert (await db.unsent(), await db.sent()) == (0, 8)
    assert await db.scalar(select(func.max(db.outbox.c.attempts))) == 1
    assert counter(registry, "astra_bus_published_events_total", PLACED) == 6
    assert counter(registry, "astra_bus_published_events_total", FILLED) == 2

    assert await relay.relay_once() == 0  # nothing is published twice
    assert await redis.xlen(PLACED) == 6
    backlog = await relay.backlog()
    assert (backlog.events, backlog.oldest_age_seconds) == (0, 0.0)


async def test_events_wait_while_redis_is_down_and_go_out_in_order_when_it_returns(
    db: Db,
    redis_server: RedisServer,
    redis_factory: Callable[..., RedisServer],
    redis: aioredis.Redis,
    make_relay: Callable[..., OutboxRelay],
    registry: CollectorRegistry,
) -> None:
    outbox = Outbox(db.outbox, producer="trading")
    relay = make_relay(poll_interval=0.05)
    await relay.start()
    redis_server.kill()

    written = await commit_events(db, outbox, range(1, 38), per_tx=1)  # 37 placed + 12 filled
    written_more = await commit_events(db, outbox, range(38, 39))  # + 1 placed = 50 events
    written[PLACED] += written_more[PLACED]
    total = len(written[PLACED]) + len(written[FILLED])
    assert total == 50
    relay.notify()

    async def all_tried() -> bool:
        least = await db.scalar(select(func.min(db.outbox.c.attempts)))
        return bool(least and least >= 1)

    await poll_until(all_tried, "the relay to try every row while Redis is down", timeout=10)
    assert counter(registry, "astra_bus_publish_failures_total", PLACED) >= len(written[PLACED])
    assert counter(registry, "astra_bus_publish_failures_total", FILLED) >= len(written[FILLED])
    assert counter(registry, "astra_bus_published_events_total", PLACED) == 0
    assert (await db.unsent(), await db.sent()) == (total, 0)
    backlog = await relay.backlog()
    assert backlog.events == total
    assert backlog.oldest_age_seconds > 0
    assert registry.get_sample_value("astra_outbox_backlog_events") == total

    # A fresh Redis on the same port (the killed one lost everything, so whatever
    # the streams hold now was published after the restart).
    redis_factory(port=redis_server.port)

    async def drained() -> bool:
        return (await relay.backlog()).events == 0

    await poll_until(drained, "the backlog to drain once Redis is back", timeout=10)
    assert await stream_event_ids(redis, PLACED) == written[PLACED]
    assert await stream_event_ids(redis, FILLED) == written[FILLED]
    assert await db.sent() == total
    assert counter(registry, "astra_bus_published_events_total", PLACED) == len(written[PLACED])
    assert counter(registry, "astra_bus_published_events_total", FILLED) == len(written[FILLED])
    assert registry.get_sample_value("astra_outbox_backlog_events") == 0


async def test_envelope_carries_correlation_causation_and_the_request_trace(
    db: Db, redis: aioredis.Redis, make_relay: Callable[..., OutboxRelay]
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    outbox = Outbox(db.outbox, producer="trading", tracer=provider.get_tracer("backbone.outbox"))
    corr, cause = set_correlation_id("corr-123"), set_causation_id("evt-cause-456")
    try:
        with provider.get_tracer("test").start_as_current_span("POST /orders") as request_span:
            async with db.sessions() as session, session.begin():
                event_id = await outbox.add(session, OrderPlaced, Placed(order_id=7))
    finally:
        reset_causation_id(cause)
        reset_correlation_id(corr)
    assert await make_relay().relay_once() == 1

    (entry,) = await entries_of(redis, PLACED)
    envelope = decode(entry[1][keys.ENVELOPE_FIELD.encode()])
    assert (envelope.event_id, envelope.correlation_id, envelope.causation_id) == (
        event_id,
        "corr-123",
        "evt-cause-456",
    )
    assert envelope.traceparent is not None
    _, trace_id, parent_span_id, _ = envelope.traceparent.split("-")
    request = request_span.get_span_context()
    assert trace_id == format(request.trace_id, "032x")

    (publish,) = [s for s in exporter.get_finished_spans() if s.name == f"{PLACED} publish"]
    assert publish.kind is trace.SpanKind.PRODUCER
    assert publish.parent is not None
    assert publish.parent.span_id == request.span_id
    assert parent_span_id == format(publish.context.span_id, "016x")
    assert dict(publish.attributes or {}) == {
        "messaging.system": "redis",
        "messaging.destination.name": PLACED,
        "messaging.operation.type": "publish",
        "messaging.message.id": event_id,
    }
    provider.shutdown()


async def test_two_relays_on_one_database_neither_duplicate_nor_reorder(
    db: Db, redis: aioredis.Redis, make_relay: Callable[..., OutboxRelay]
) -> None:
    outbox = Outbox(db.outbox, producer="trading")
    relays = [make_relay(batch_size=4, poll_interval=0.01) for _ in range(2)]
    for relay in relays:
        await relay.start()

    written: dict[str, list[str]] = {PLACED: [], FILLED: []}
    for first in range(1, 121, 4):  # 120 placed + 40 filled, 4 orders per transaction
        batch = await commit_events(db, outbox, range(first, first + 4), per_tx=4)
        for stream, ids in batch.items():
            written[stream] += ids
        for relay in relays:
            relay.notify()

    async def drained() -> bool:
        return await db.unsent() == 0

    await poll_until(drained, "both relays to drain the outbox", timeout=15)
    assert await stream_event_ids(redis, PLACED) == written[PLACED]
    assert await stream_event_ids(redis, FILLED) == written[FILLED]


async def test_a_relay_skips_its_batch_while_another_holds_the_tables_lock(
    db: Db, redis: aioredis.Redis, make_relay: Callable[..., OutboxRelay]
) -> None:
    outbox = Outbox(db.outbox, producer="trading")
    written = await commit_events(db, outbox, range(1, 3))
    relay = make_relay()

    if db.engine.dialect.name == "postgresql":
        async with db.engine.connect() as holder:
            await holder.execute(select(func.pg_advisory_lock(advisory_key(db.outbox))))
            assert await relay.relay_once() == 0
            await holder.execute(select(func.pg_advisory_unlock(advisory_key(db.outbox))))
    else:
        path = sqlite_file(db.engine)
        assert path is not None
        fd = os.open(f"{path}-{db.outbox.fullname}.relay-lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            assert await relay.relay_once() == 0
        finally:
            os.close(fd)

    assert await redis.exists(PLACED) == 0
    assert await db.unsent() == 2
    assert await relay.relay_once() == 2
    assert await stream_event_ids(redis, PLACED) == written[PLACED]


async def test_entries_redis_refuses_stay_unsent_and_the_accepted_ones_are_marked(
    db: Db,
    redis: aioredis.Redis,
    make_relay: Callable[..., OutboxRelay],
    registry: CollectorRegistry,
) -> None:
    outbox = Outbox(db.outbox, producer="trading")
    await redis.set(FILLED, "not a stream")  # every XADD to it fails with WRONGTYPE
    written = await commit_events(db, outbox, range(1, 7))  # 6 placed, 2 filled
    relay = make_relay()

    with pytest.raises(OutboxError, match="refused 2 of 8"):
        await relay.relay_once()
    assert await stream_event_ids(redis, PLACED) == written[PLACED]
    t = db.outbox
    assert (
        await db.scalar(select(func.count()).where(t.c.stream == FILLED, t.c.sent_at.is_(None)))
        == 2
    )
    assert await db.unsent() == 2
    assert counter(registry, "astra_bus_publish_failures_total", FILLED) == 2
    assert counter(registry, "astra_bus_published_events_total", PLACED) == 6

    await redis.delete(FILLED)
    assert await relay.relay_once() == 2
    assert await stream_event_ids(redis, FILLED) == written[FILLED]
    assert await db.scalar(select(func.max(t.c.attempts)).where(t.c.stream == FILLED)) == 2


async def test_prune_deletes_only_rows_already_sent(
    db: Db, make_relay: Callable[..., OutboxRelay]
) -> None:
    outbox = Outbox(db.outbox, producer="trading")
    await commit_events(db, outbox, range(1, 6))  # 5 placed, 1 filled
    relay = make_relay()
    assert await relay.relay_once() == 6
    await commit_events(db, outbox, range(7, 9))  # 2 more, unsent

    assert await relay.prune(timedelta(hours=1)) == 0  # sent too recently
    assert await relay.prune(timedelta(0), chunk=4) == 6
    assert (await db.unsent(), await db.sent()) == (2, 0)


async def test_aclose_publishes_what_is_left_and_is_idempotent(
    db: Db, redis: aioredis.Redis, make_relay: Callable[..., OutboxRelay]
) -> None:
    outbox = Outbox(db.outbox, producer="trading")
    idle = make_relay()
    relay = make_relay(poll_interval=60.0)  # only close (or a notify) would publish now
    await relay.start()
    written = await commit_events(db, outbox, range(1, 4))

    await idle.aclose()  # never started: closing it publishes nothing
    await relay.aclose()
    assert await stream_event_ids(redis, PLACED) == written[PLACED]
    assert await db.unsent() == 0
    await relay.aclose()
    with pytest.raises(OutboxError, match="closed"):
        await relay.start()
    assert "closed" in repr(relay)


async def test_aclose_gives_up_in_bounded_time_while_redis_is_down(
    db: Db, redis_server: RedisServer, make_relay: Callable[..., OutboxRelay]
) -> None:
    outbox = Outbox(db.outbox, producer="trading")
    relay = make_relay(close_timeout=0.5, poll_interval=60.0)
    await relay.start()
    redis_server.kill()
    written = await commit_events(db, outbox, range(1, 4))  # 3 placed, 1 filled

    started = time.monotonic()
    await relay.aclose()
    assert time.monotonic() - started < 2.0
    assert (
        await db.unsent() == len(written[PLACED]) + len(written[FILLED]) == 4
    )  # waiting for the next relay, not lost and not marked


async def test_a_stalled_redis_times_out_the_batch_and_delivery_stays_at_least_once(
    db: Db,
    redis_server: RedisServer,
    redis: aioredis.Redis,
    make_relay: Callable[..., OutboxRelay],
) -> None:
    outbox = Outbox(db.outbox, producer="trading")
    written = await commit_events(db, outbox, range(1, 5))  # 4 placed, 1 filled
    relay = make_relay(publish_timeout=0.3)
    assert redis_server.process is not None
    pid = redis_server.process.pid

    os.kill(pid, signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        started = time.monotonic()
        with pytest.raises(OutboxError, match="TimeoutError"):
            await relay.relay_once()
        assert time.monotonic() - started < 2.0
        assert await db.sent() == 0
    finally:
        os.kill(pid, signal.SIGCONT)

    async def published() -> int:
        try:
            return await relay.relay_once()
        except OutboxError:  # a reconnect may still be on its way
            return 0

    await poll_until(published, "the relay to publish once Redis answers again", timeout=5)
    assert await db.unsent() == 0
    # Redis may or may not have applied the timed-out XADDs: either way every
    # event is there, first occurrences in order; consumers drop repeats by event_id.
    for stream in (PLACED, FILLED):
        seen = await stream_event_ids(redis, stream)
        assert list(dict.fromkeys(seen)) == written[stream]
