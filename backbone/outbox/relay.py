"""The relay: committed outbox rows -> Redis streams, marked sent only after Redis accepted them.

    service tx:  domain rows + outbox row ──commit──▶ astra_outbox (sent_at NULL)
    relay batch: lock ─▶ SELECT lowest-id unsent rows ─▶ one XADD pipeline, in id order
                      ─▶ UPDATE sent_at of exactly the accepted rows ─▶ COMMIT ─▶ unlock

With `BusSettings.replica_acks` (on under Sentinel) the pipeline ends in `WAIT n`: a
batch is marked sent only once n replicas hold it, so a failover to a replica loses no
event the outbox let go of.

Delivery is at least once. A relay that dies between the XADD and the UPDATE,
or a publish that timed out after Redis applied it, sends the same event_id again
with the next batch; consumers deduplicate by event_id. An event is never marked
sent unless Redis returned an entry ID for it.

While Redis is unreachable nothing is marked: rows wait, the relay backs off
(capped, jittered), and once Redis answers again they go out in id order. Per
stream that is the order the rows were written (for concurrent writers on
PostgreSQL, their commit order). One relay at a time works a table: a PostgreSQL
advisory lock, or an flock beside an SQLite file, keeps two relays from sending
interleaved batches; the one that finds it taken skips the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client import Counter as PromCounter
from redis.backoff import AbstractBackoff, EqualJitterBackoff
from redis.exceptions import RedisError
from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backbone import keys
from backbone.bus.metrics import bus_metrics
from backbone.bus.streams import retention_for
from backbone.config import BusSettings
from backbone.errors import OutboxError
from backbone.outbox._lock import relay_lock_for
from backbone.replicated_write import ReplicatedWriter

log = logging.getLogger(__name__)

_PATH = "outbox"  # the `path` label of the bus publish counters


class _Pending(NamedTuple):
    id: int
    stream: str
    envelope: bytes


class Backlog(NamedTuple):
    events: int  # rows Redis has not accepted yet
    oldest_age_seconds: float  # age of the oldest of them; 0.0 when there are none


class OutboxRelay:
    """Publishes an outbox table's committed rows, in order, until closed.

    relay = OutboxRelay(engine, outbox.table, redis, settings.bus)
    await relay.start()
    ...                     # after each commit that wrote events: relay.notify()
    await relay.aclose()    # publishes what is left if Redis answers (bounded)

    The engine and the Redis client belong to the caller, who closes them after
    the relay. Give the client few retries of its own (`retry=Retry(NoBackoff(), 1)`):
    the relay already retries every batch, with `backoff`, and `publish_timeout`
    bounds one attempt however the client is configured.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        redis: aioredis.Redis,
        settings: BusSettings,
        *,
        batch_size: int = 200,
        poll_interval: float = 0.2,
        publish_timeout: float = 5.0,
        close_timeout: float = 5.0,
        backoff: AbstractBackoff | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.table = table
        self._engine = engine
        self._redis = redis
        self._settings = settings
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._publish_timeout = publish_timeout
        self._close_timeout = close_timeout
        self._backoff = backoff or EqualJitterBackoff(cap=2.0, base=0.05)
        self._metrics = bus_metrics(registry)
        self._gauge_interval = settings.metrics_sample_interval_ms / 1000
        # Fail at start-up, not on the first batch, when a retention breaks the lag budget.
        for stream in settings.retention:
            retention_for(settings, stream)
        retention_for(settings, "default")
        self._lock = relay_lock_for(engine, table)
        self._writer = ReplicatedWriter(redis)  # XADDs then WAIT, shard by shard
        self._batch_lock = asyncio.Lock()  # one batch at a time within this relay
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._gauges_at = float("-inf")
        self._last_backlog: Backlog | None = None

    # --- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        if self._closed:
            raise OutboxError("the relay is closed")
        if self._task is None:
            self._task = asyncio.create_task(
                self._run(), name=f"outbox-relay:{self.table.fullname}"
            )

    def notify(self) -> None:
        """Publish now rather than at the next poll (call after committing events)."""
        self._wake.set()

    async def aclose(self) -> None:
        """Stop the loop; if it was running, publish what is left within `close_timeout`."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._wake.set()
        deadline = asyncio.get_running_loop().time() + self._close_timeout
        task, self._task = self._task, None
        try:
            if task is not None:
                await self._stop_task(task, deadline)
                await self._drain(deadline)
        finally:
            self._lock.close()
            await self._writer.aclose()

    async def __aenter__(self) -> OutboxRelay:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _stop_task(self, task: asyncio.Task[None], deadline: float) -> None:
        # The loop notices `_stopping` between batches; a batch in flight finishes,
        # so a clean shutdown does not leave sent-but-unmarked rows behind.
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        done, _ = await asyncio.wait({task}, timeout=remaining)
        if not done:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        elif not task.cancelled() and task.exception() is not None:
            log.error("outbox relay loop crashed", exc_info=task.exception())

    async def _drain(self, deadline: float) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                while await self.relay_once() >= self._batch_size:
                    pass
        except Exception as e:
            left = self._last_backlog.events if self._last_backlog else "unknown"
            log.warning(
                "outbox relay closed without publishing everything (%s); %s events wait "
                "for the next relay",
                str(e) or type(e).__name__,
                left,
            )

    # --- the loop ------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                published = await self.relay_once()
            except Exception as e:
                failures += 1
                delay = self._backoff.compute(failures)
                await self._refresh_gauges(force=True)
                left = self._last_backlog.events if self._last_backlog else "unknown"
                # Every failure is counted in the metrics; the log only samples a long outage.
                level = logging.WARNING if failures <= 3 or failures % 30 == 0 else logging.DEBUG
                log.log(
                    level,
                    "outbox batch failed (%s); %s events waiting; retry %d in %.2fs",
                    e,
                    left,
                    failures,
                    delay,
                )
                await self._sleep(self._stopping, delay)
                continue
            if failures:
                log.info("outbox relay recovered after %d failed batches", failures)
                failures = 0
            await self._refresh_gauges()
            if published < self._batch_size:
                await self._sleep(self._wake, self._poll_interval)

    @staticmethod
    async def _sleep(until: asyncio.Event, delay: float) -> None:
        with suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await until.wait()

    async def _refresh_gauges(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._gauges_at < self._gauge_interval:
            return
        try:
            await self.backlog()
        except Exception as e:
            log.debug("outbox backlog query failed: %s", e)

    # --- one batch -----------------------------------------------------------

    async def relay_once(self) -> int:
        """Publish one batch; return how many events Redis accepted.

        0 when nothing waits or another relay holds the table's lock. Raises
        OutboxError when Redis refused some or all of the batch; what it accepted
        is marked sent, the rest stays unsent for the next attempt.
        """
        async with self._batch_lock, self._engine.connect() as conn:
            if self._lock.holds_transaction:
                # Each statement must see the previous lock holder's commit, whatever
                # isolation level the service's engine defaults to.
                conn = await conn.execution_options(isolation_level="READ COMMITTED")
            if not await self._lock.try_acquire(conn):
                return 0
            try:
                return await self._batch(conn)
            finally:
                self._lock.release()

    async def _batch(self, conn: AsyncConnection) -> int:
        t = self.table
        fetched = (
            await conn.execute(
                select(t.c.id, t.c.stream, t.c.envelope)
                .where(t.c.sent_at.is_(None))
                .order_by(t.c.id)
                .limit(self._batch_size)
            )
        ).all()
        rows = [_Pending(int(r[0]), str(r[1]), bytes(r[2])) for r in fetched]
        if not self._lock.holds_transaction:
            await conn.commit()  # no read transaction held open across the Redis round trip
        if not rows:
            return 0
        xadd_kwargs = {
            stream: retention_for(self._settings, stream).xadd_kwargs()
            for stream in {row.stream for row in rows}
        }
        try:
            async with asyncio.timeout(self._publish_timeout):
                results = await self._xadd(rows, xadd_kwargs)
        except (RedisError, OSError) as e:  # OSError covers TimeoutError
            self._count(self._metrics.publish_failures, rows)
            await self._mark(conn, sent=(), refused=rows)
            raise OutboxError(
                f"Redis did not take a batch of {len(rows)} events "
                f"({type(e).__name__}: {e}); none marked sent"
            ) from e
        acks = self._settings.replica_acks or 0
        if acks:
            replicated, results = results[-1], results[:-1]
            if _is_error(replicated) or int(replicated) < acks:
                # Redis took them, not enough replicas did: a failover now could lose
                # them, so none is marked sent; the next batch publishes them again
                # (consumers dedupe by event_id).
                self._count(self._metrics.unreplicated, rows)
                await self._mark(conn, sent=(), refused=rows)
                raise OutboxError(
                    f"a batch of {len(rows)} events reached {replicated} of the {acks} "
                    f"replicas asked for within {self._settings.replica_ack_timeout_ms} ms; "
                    "none marked sent"
                )
        accepted = [row for row, r in zip(rows, results, strict=True) if not _is_error(r)]
        refused = [(row, r) for row, r in zip(rows, results, strict=True) if _is_error(r)]
        self._count(self._metrics.published, accepted)
        self._count(self._metrics.publish_failures, [row for row, _ in refused])
        await self._mark(conn, sent=accepted, refused=[row for row, _ in refused])
        if refused:
            row, error = refused[0]
            raise OutboxError(
                f"Redis refused {len(refused)} of {len(rows)} events "
                f"(first: {row.stream}: {error}); {len(accepted)} marked sent"
            )
        return len(accepted)

    async def _xadd(
        self, rows: Sequence[_Pending], xadd_kwargs: dict[str, dict[str, Any]]
    ) -> list[Any]:
        acks = self._settings.replica_acks
        if acks:  # the XADDs, then a WAIT on each shard's connection: one list, WAIT last
            done = await self._writer.write(
                [_xadd_command(row, xadd_kwargs[row.stream]) for row in rows],
                acks,
                self._settings.replica_ack_timeout_ms,
            )
            return [*done.replies, done.replicated]
        async with self._redis.pipeline(transaction=False) as pipe:
            for row in rows:
                pipe.xadd(
                    row.stream, {keys.ENVELOPE_FIELD: row.envelope}, **xadd_kwargs[row.stream]
                )
            return await pipe.execute(raise_on_error=False)

    async def _mark(
        self, conn: AsyncConnection, *, sent: Sequence[_Pending], refused: Sequence[_Pending]
    ) -> None:
        t = self.table
        if sent:
            await conn.execute(
                update(t)
                .where(t.c.id.in_([row.id for row in sent]))
                .values(sent_at=datetime.now(UTC), attempts=t.c.attempts + 1)
            )
        if refused:
            await conn.execute(
                update(t)
                .where(t.c.id.in_([row.id for row in refused]))
                .values(attempts=t.c.attempts + 1)
            )
        await conn.commit()

    @staticmethod
    def _count(counter: PromCounter, rows: Sequence[_Pending]) -> None:
        for stream, n in Counter(row.stream for row in rows).items():
            counter.labels(stream, _PATH).inc(n)

    # --- readiness and housekeeping ------------------------------------------

    async def backlog(self) -> Backlog:
        """Unsent events and the age of the oldest; also sets the backlog gauges."""
        t = self.table
        async with self._engine.connect() as conn:
            count, oldest = (
                await conn.execute(
                    select(func.count(), func.min(t.c.created_at)).where(t.c.sent_at.is_(None))
                )
            ).one()
        age = 0.0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        result = Backlog(int(count), age)
        self._metrics.outbox_backlog.set(result.events)
        self._metrics.outbox_oldest_age.set(result.oldest_age_seconds)
        self._last_backlog = result
        self._gauges_at = time.monotonic()
        return result

    async def prune(self, older_than: timedelta, *, chunk: int = 5000) -> int:
        """Delete rows sent more than `older_than` ago, in chunks; return how many.

        Unsent rows are never touched, however old.
        """
        t = self.table
        cutoff = datetime.now(UTC) - older_than
        total = 0
        while True:
            ids = (
                select(t.c.id)
                .where(t.c.sent_at.is_not(None), t.c.sent_at < cutoff)
                .order_by(t.c.id)
                .limit(chunk)
            )
            async with self._engine.begin() as conn:
                deleted = (await conn.execute(delete(t).where(t.c.id.in_(ids)))).rowcount
            total += deleted
            if deleted < chunk:
                return total

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._task else "idle"
        backlog = f" backlog={self._last_backlog.events}" if self._last_backlog else ""
        return f"<OutboxRelay table={self.table.fullname} {state}{backlog}>"


def _xadd_command(row: _Pending, kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """`XADD stream MAXLEN|MINID ~ n * envelope <json>`, as `Redis.xadd(**kwargs)` sends it."""
    if "maxlen" in kwargs:
        trim: tuple[Any, ...] = ("MAXLEN", "~", kwargs["maxlen"])
    else:
        trim = ("MINID", "~", kwargs["minid"])
    return ("XADD", row.stream, *trim, "*", keys.ENVELOPE_FIELD, row.envelope)


def _is_error(result: object) -> bool:
    return isinstance(result, BaseException)
