"""A named consumer group that delivers every event at least once and applies it once.

    read (XREADGROUP >, one command per stream)  --> decode + validate envelope
       |                                              | poison --> <stream>.dlq + XACK
       v                                              v
    processed-marker check (skip duplicates)  --> handler(event, ctx)
       | success: one Lua script = effects + marker SET NX + XACK (on a Redis
       |   Cluster two steps: each slot's share under its marker, then the ack)
       | failure: HINCRBY failures; after max_deliveries --> <stream>.dlq + XACK
    reaper: XAUTOCLAIM entries idle > claim_idle_ms (crashed peers, failed retries)
    Redis away: every loop backs off (50 ms .. 2 s), logs once per outage, and
    recreates the groups (NOGROUP) when a Redis that lost its data comes back
    Defences a chaos drill can switch off (BusSettings): `reaper_enabled` (the
    reaper and the own-pending drain), `idempotency_markers` (the marker check)

Nothing is acked before its handler succeeded; a crash anywhere leaves the entry
pending, and the reaper or the restarted consumer (which drains its own pending
entries first) delivers it again. Streams are read one command each, never one
XREADGROUP across streams that Redis Cluster could place in different slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from opentelemetry import trace
from prometheus_client import REGISTRY, CollectorRegistry
from pydantic import BaseModel
from redis.crc import key_slot
from redis.exceptions import RedisError, ResponseError

from backbone import keys
from backbone._text import text
from backbone.bus import envelope as envelope_codec
from backbone.bus._outage import Outage
from backbone.bus.effects import COMMIT_SCRIPT, Effects, commit_args, split_by_slot
from backbone.bus.envelope import Envelope
from backbone.bus.metrics import BusMetrics, bus_metrics
from backbone.bus.streams import EventType, Retention, retention_for
from backbone.config import BusSettings
from backbone.errors import BusError, EnvelopeError
from backbone.redis_pool import is_cluster
from backbone.telemetry import correlation
from backbone.telemetry.propagation import context_from_traceparent, current_traceparent
from backbone.telemetry.tracing import resolve_tracer

log = logging.getLogger("backbone.bus.consumer")

D = TypeVar("D", bound=BaseModel)
_CONSUMER = trace.SpanKind.CONSUMER
_DLQ_MAXLEN = 100_000  # dead letters are kept for operators, trimmed approximately
_ENVELOPE_KEY = keys.ENVELOPE_FIELD.encode()  # clients run with decode_responses=False
RawEntry = tuple[bytes, dict[bytes, bytes] | None]


@dataclass(frozen=True, slots=True)
class Event(Generic[D]):
    """One delivered event, with its validated data."""

    stream: str
    entry_id: str
    envelope: Envelope
    data: D
    attempt: int  # 1 on first delivery; handler failures so far + 1
    raw: bytes = b""  # the entry's envelope bytes, as published (kept for the DLQ)

    @property
    def event_id(self) -> str:
        return self.envelope.event_id


class HandlerContext:
    """What a handler may do besides reading its event: buffer Redis effects and publish.

    Both are applied only if the handler returns, atomically with the ack.
    """

    __slots__ = ("_consumer", "effects", "event")

    def __init__(self, consumer: Consumer, event: Event[Any]) -> None:
        self._consumer = consumer
        self.event = event
        self.effects = Effects()

    def publish(self, event_type: EventType[Any], data: BaseModel) -> str:
        """Queue an event caused by this one; it is XADDed with the ack, or never."""
        event_id, body = envelope_codec.encode(
            event_type,
            data,
            producer=self._consumer.producer,
            correlation_id=self.event.envelope.correlation_id,
            causation_id=self.event.event_id,
            traceparent=current_traceparent(),
        )
        stream = event_type.stream_key
        self.effects.call(
            "XADD", stream, *self._consumer.trim_args(stream), "*", keys.ENVELOPE_FIELD, body
        )
        return event_id


Handler = Callable[[Event[Any], HandlerContext], Awaitable[None]]


class Consumer:
    """One member of a consumer group, subscribed to one or more event types.

    consumer = Consumer(redis, group="social_feed_generators", consumer="social-1",
                        handlers={TradeExecuted: on_trade, LevelUp: on_level_up},
                        settings=BusSettings(), producer="social")
    await consumer.start()      # background tasks; or `await consumer.run(burst=True)`
    ...
    await consumer.aclose()     # stop reading, finish the batch in flight, ack, exit
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        group: str,
        consumer: str,
        handlers: Mapping[EventType[Any], Handler],
        settings: BusSettings,
        producer: str,
        start_id: str = "0",
        commit_each: bool = False,
        tracer: trace.Tracer | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        if not handlers:
            raise BusError(f"consumer group {group!r} has no handlers")
        self.redis = redis
        self.group = group
        self.name = consumer
        self.producer = producer
        self.settings = settings
        self._handlers = {et.stream_key: (et, h) for et, h in handlers.items()}
        self._start_id = start_id
        # Batch commits are faster; per-event commits let a handler read the state
        # that the previous event's effects wrote (read-modify-write handlers).
        self._commit_each = commit_each
        self._tracer = resolve_tracer("backbone.bus", tracer)
        self._tracing = not isinstance(self._tracer, trace.NoOpTracer)
        self._metrics = bus_metrics(registry)
        # Labelled children looked up once: `labels()` costs a microsecond per call.
        self._stream_metrics = {
            stream: _StreamMetrics(self._metrics, stream, group) for stream in self._handlers
        }
        self._commit = redis.register_script(COMMIT_SCRIPT)
        # On a Redis Cluster a commit is two steps and a dead letter two writes (see
        # bus/effects); the slot-tag table the markers need is built here, not mid-batch.
        self._cluster = is_cluster(redis)
        if self._cluster:
            keys.slot_tag(0)
        self._retention: dict[str, Retention] = {}
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight = 0
        self.last_error: str | None = None
        fields = {"group": group, "consumer": consumer}
        self._outages = {
            stream: Outage(log, f"consumer {group} reading {stream}", stream=stream, **fields)
            for stream in self._handlers
        }
        self._reaper_outage = Outage(log, f"consumer {group} reaper", **fields)
        # The defence switches, read once (BusSettings says what turning each off means).
        self._redeliver = settings.reaper_enabled
        self._markers = settings.idempotency_markers

    # --- lifecycle ---------------------------------------------------------

    @property
    def streams(self) -> list[str]:
        return list(self._handlers)

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    @property
    def waiting_for_redis(self) -> str | None:
        """Why a read loop is backing off (its last Redis error), or None when all read."""
        for outage in self._outages.values():
            if outage.active:
                return outage.error
        return None

    async def start(self) -> None:
        """Create the groups and start the loops; a Redis away now only delays reading."""
        try:
            await self._ensure_groups()
        except (RedisError, OSError) as e:
            # The read loops create the groups on their first NOGROUP once Redis is back.
            self._note_error(e)
        self._stopping.clear()
        self._tasks = [
            asyncio.create_task(self._read_loop(stream), name=f"consume:{self.group}:{stream}")
            for stream in self._handlers
        ]
        if self._redeliver:
            self._tasks.append(asyncio.create_task(self._reap_loop(), name=f"reap:{self.group}"))
        self._warn_defences_off()
        log.info("consumer started", extra={"group": self.group, "streams": self.streams})

    async def aclose(self, grace: float | None = None) -> None:
        """Stop reading, let the batch in flight finish and ack; cancel after `grace`."""
        if not self._tasks:
            return
        self._stopping.set()
        timeout = grace if grace is not None else self.settings.block_ms / 1000 + 5.0
        _, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        log.info("consumer stopped", extra={"group": self.group, "cancelled": len(pending)})

    async def run(self, *, burst: bool = False) -> None:
        """Run until closed; `burst=True`: process what is there (and reclaims), return."""
        if not burst:
            await self.start()
            await asyncio.gather(*self._tasks)
            return
        await self._ensure_groups()
        for stream in self._handlers:
            if self._redeliver:
                await self._drain_own_pending(stream)
            while await self._read_once(stream, block_ms=None):
                pass
            if self._redeliver:
                await self._reap_stream(stream)

    def __repr__(self) -> str:
        return (
            f"<Consumer group={self.group} consumer={self.name} streams={len(self._handlers)} "
            f"in_flight={self._in_flight} running={self.running}>"
        )

    # --- reading -----------------------------------------------------------

    async def _ensure_groups(self) -> list[str]:
        """Create the group on each stream that lacks it; the streams where it was created."""
        created = []
        for stream in self._handlers:
            try:
                await self.redis.xgroup_create(stream, self.group, id=self._start_id, mkstream=True)
            except ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
            else:
                created.append(stream)
        return created

    async def _read_loop(self, stream: str) -> None:
        outage = self._outages[stream]
        # Reaper off: what this name holds pending stays pending (the defence is gone).
        drained = not self._redeliver
        recreated = False
        while not self._stopping.is_set():
            try:
                if not drained:
                    await self._drain_own_pending(stream)
                    drained = True
                await self._read_once(stream, block_ms=self.settings.block_ms)
                outage.recovered()
                recreated = False
            except (RedisError, OSError, EOFError) as e:  # EOFError: a read cut short
                self._note_error(e)
                if "NOGROUP" in str(e) and not recreated:
                    # A Redis that came back without its data lost the group (and the
                    # stream): recreate both and read again at once (once: a group
                    # that vanishes again right away waits like any other failure).
                    await self._recreate_groups()
                    recreated = True
                    continue
                drained = not self._redeliver  # after an outage, first finish what we hold
                await self._sleep(outage.failed(e))
            except Exception as e:  # a bug must not end the loop: the group would stall
                log.exception("consumer read loop error", extra={"stream": stream})
                self._note_error(e)
                drained = not self._redeliver
                await self._sleep(outage.failed(e))

    async def _read_once(self, stream: str, block_ms: int | None) -> int:
        response = await self.redis.xreadgroup(
            self.group, self.name, {stream: ">"}, count=self.settings.batch_size, block=block_ms
        )
        # Redis answered: the outage (if any) is over before the batch is handled, so
        # readiness is back as soon as events flow again.
        self._outages[stream].recovered()
        entries = _entries(response)
        if entries:
            await self._process(stream, entries, redelivered=False)
        return len(entries)

    async def _drain_own_pending(self, stream: str) -> None:
        """Entries delivered to this consumer name before a restart come first."""
        start = "0"
        while not self._stopping.is_set():
            response = await self.redis.xreadgroup(
                self.group, self.name, {stream: start}, count=self.settings.batch_size
            )
            entries = _entries(response)
            if not entries:
                return
            self._metrics.own_pending_reread.labels(stream, self.group).inc(len(entries))
            await self._process(stream, entries, redelivered=True)
            start = text(entries[-1][0])

    async def _reap_loop(self) -> None:
        interval = self.settings.reaper_interval_ms / 1000
        outage = self._reaper_outage
        delay = interval
        while not self._stopping.is_set():
            await self._sleep(delay)
            delay = interval
            try:
                for stream in self._handlers:
                    if self._stopping.is_set():
                        return
                    await self._reap_stream(stream)
                outage.recovered()
            except (RedisError, OSError, EOFError) as e:
                if "NOGROUP" in str(e):
                    await self._recreate_groups()  # Redis lost its data; nothing to reclaim
                    continue
                self._note_error(e)
                delay = max(interval, outage.failed(e))
            except Exception as e:  # keep reclaiming whatever went wrong once
                log.exception("consumer reaper error", extra={"group": self.group})
                self._note_error(e)
                delay = max(interval, outage.failed(e))

    async def _reap_stream(self, stream: str) -> None:
        start = "0-0"
        while True:
            next_id, claimed, deleted = await self.redis.xautoclaim(
                stream,
                self.group,
                self.name,
                min_idle_time=self.settings.claim_idle_ms,
                start_id=start,
                count=self.settings.batch_size,
            )
            if deleted:
                self._metrics.trimmed_before_ack.labels(stream, self.group).inc(len(deleted))
                log.error(
                    "pending entries were trimmed before being acked",
                    extra={"stream": stream, "group": self.group, "count": len(deleted)},
                )
            if claimed:
                self._metrics.retried.labels(stream, self.group).inc(len(claimed))
                await self._process(stream, claimed, redelivered=True)
            start = text(next_id)
            if start == "0-0" or self._stopping.is_set():
                return

    async def _recreate_groups(self) -> None:
        try:
            created = await self._ensure_groups()
        except (RedisError, OSError) as e:
            self._note_error(e)
            return
        if created:
            log.warning(
                "consumer group recreated (Redis lost it); reading those streams from %s",
                self._start_id,
                extra={"group": self.group, "streams": created},
            )

    # --- processing --------------------------------------------------------

    async def _process(
        self, stream: str, entries: Sequence[RawEntry], *, redelivered: bool
    ) -> None:
        event_type, handler = self._handlers[stream]
        fkey = keys.failure_counts(stream, self.group)
        self._in_flight += len(entries)
        try:
            events: list[Event[Any]] = []
            for raw_id, fields in entries:
                entry_id = text(raw_id)
                # Trimmed while pending: nothing left to deliver. redis-py gives {} (None
                # in older versions) for such an entry; a real one has a field at least
                # (found: a trimmed entry misfiled as poison, its loss never counted).
                if not fields:
                    self._metrics.trimmed_before_ack.labels(stream, self.group).inc()
                    # The id is all that is left (its time: the first half): what an
                    # operator rebuilds the effect from, in the producer's records.
                    log.error(
                        "pending entry trimmed before it was acked: its effect is lost",
                        extra={"stream": stream, "group": self.group, "entry_id": entry_id},
                    )
                    await self.redis.xack(stream, self.group, entry_id)
                    continue
                raw = fields.get(_ENVELOPE_KEY)
                try:
                    event = self._decode(stream, event_type, entry_id, raw)
                except EnvelopeError as e:
                    await self._dead_letter(stream, entry_id, fields, str(e), 0, "poison")
                    continue
                if not event_type.allows(event.envelope.producer):
                    # Well-formed is not trusted: anyone who can XADD can write a valid
                    # envelope, so only the producers the event type declares are applied.
                    why = (
                        f"producer {event.envelope.producer[:128]!r} is not declared for "
                        f"{stream} (declared: {', '.join(event_type.producers)})"
                    )
                    await self._dead_letter(stream, entry_id, fields, why, 0, "unknown_producer")
                    continue
                events.append(event)
            if not events:
                return
            failures = await self._failure_counts(fkey, events) if redelivered else {}
            duplicates = await self._already_processed(stream, events) if self._markers else set()
            commits: list[tuple[str, str, bool, Effects | None]] = []
            failed: list[tuple[Event[Any], str]] = []
            by_entry = {event.entry_id: event for event in events}
            for event in events:
                if self._stopping.is_set():
                    break  # commit what was handled; the rest stays pending for later
                prior = failures.get(event.entry_id, 0)
                if event.event_id in duplicates:  # applied before, or earlier in this batch
                    self._stream_metrics[stream].duplicates.inc()
                    commits.append((event.event_id, event.entry_id, prior > 0, None))
                    continue
                if prior:
                    event = _with_attempt(event, prior + 1)
                outcome = await self._handle(stream, handler, event)
                if isinstance(outcome, Effects):
                    if self._markers:  # a later copy in this batch is a duplicate
                        duplicates.add(event.event_id)
                    entry = (event.event_id, event.entry_id, prior > 0, outcome)
                    if self._commit_each:
                        await self._commit_and_settle(stream, fkey, [entry], by_entry)
                    else:
                        commits.append(entry)
                else:
                    failed.append((event, outcome))
            if commits:
                await self._commit_and_settle(stream, fkey, commits, by_entry)
            for event, error in failed:
                await self._record_failure(stream, fkey, event, error)
        finally:
            self._in_flight -= len(entries)

    def _decode(
        self, stream: str, event_type: EventType[Any], entry_id: str, raw: bytes | None
    ) -> Event[Any]:
        if raw is None:
            raise EnvelopeError(f"entry has no {keys.ENVELOPE_FIELD!r} field")
        env, data = envelope_codec.decode_typed(event_type, raw)
        return Event(stream, entry_id, env, data, 1, raw)

    async def _handle(self, stream: str, handler: Handler, event: Event[Any]) -> Effects | str:
        """Run the handler in the event's trace and correlation; its effects, or the error."""
        env = event.envelope
        cid = correlation.set_correlation_id(env.correlation_id)
        cause = correlation.set_causation_id(env.event_id)
        started = time.perf_counter()
        try:
            if not self._tracing:
                return await self._invoke(stream, handler, event, None)
            with self._tracer.start_as_current_span(
                f"{stream} process",
                context=context_from_traceparent(env.traceparent),
                kind=_CONSUMER,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                if span.is_recording():
                    span.set_attributes(
                        {
                            "messaging.system": "redis",
                            "messaging.destination.name": stream,
                            "messaging.operation.type": "process",
                            "messaging.consumer.group.name": self.group,
                            "messaging.message.id": env.event_id,
                            "messaging.redis.entry_id": event.entry_id,
                            "astra.delivery.attempt": event.attempt,
                        }
                    )
                return await self._invoke(stream, handler, event, span)
        finally:
            self._stream_metrics[stream].duration.observe(time.perf_counter() - started)
            correlation.reset_causation_id(cause)
            correlation.reset_correlation_id(cid)

    async def _invoke(
        self, stream: str, handler: Handler, event: Event[Any], span: trace.Span | None
    ) -> Effects | str:
        ctx = HandlerContext(self, event)
        try:
            await handler(event, ctx)
        except Exception as e:  # a handler's failure is data, not a crash
            if span is not None:
                span.record_exception(e)
                span.set_status(trace.StatusCode.ERROR, type(e).__name__)
            self._stream_metrics[stream].failed.inc()
            log.warning(
                "handler failed", exc_info=True, extra=_log_fields(stream, self.group, event)
            )
            return f"{type(e).__name__}: {e}"[:2000]
        # Freshness SLI: once per successful handling, wall clock against occurred_at.
        age = time.time() - event.envelope.occurred_at.timestamp()
        self._stream_metrics[stream].age.observe(max(age, 0.0))
        return ctx.effects

    async def _failure_counts(self, fkey: str, events: list[Event[Any]]) -> dict[str, int]:
        values = await self.redis.hmget(fkey, [e.entry_id for e in events])
        return {e.entry_id: int(v) for e, v in zip(events, values, strict=True) if v is not None}

    async def _already_processed(self, stream: str, events: list[Event[Any]]) -> set[str]:
        # One MGET, not a pipeline of EXISTS: the markers share the stream's hash
        # tag (one Cluster slot), and one command packs and parses far cheaper.
        found = await self.redis.mget(
            [keys.processed_marker(stream, self.group, e.event_id) for e in events]
        )
        return {e.event_id for e, hit in zip(events, found, strict=True) if hit is not None}

    async def _commit_and_settle(
        self,
        stream: str,
        fkey: str,
        commits: list[tuple[str, str, bool, Effects | None]],
        by_entry: dict[str, Event[Any]],
    ) -> None:
        """Commit; an event whose effects Redis refused goes to the DLQ, never "consumed"."""
        for entry_id, error in await self._commit_batch(stream, fkey, commits):
            event = by_entry[entry_id]
            self._stream_metrics[stream].failed.inc()
            log.error("effects refused by Redis", extra={**_log_fields(stream, self.group, event)})
            fields = {_ENVELOPE_KEY: event.raw or event.envelope.model_dump_json().encode()}
            await self._dead_letter(stream, entry_id, fields, error, event.attempt, "effect_error")

    async def _commit_batch(
        self,
        stream: str,
        fkey: str,
        commits: list[tuple[str, str, bool, Effects | None]],
    ) -> list[tuple[str, str]]:
        """Run the commit script; `(entry_id, error)` of events whose effects failed."""
        if self._cluster:
            return await self._commit_by_slot(stream, fkey, commits)
        prefix = keys.processed_marker(stream, self.group, "")
        ttl = self.settings.processed_ttl_seconds
        args = commit_args(stream, self.group, ttl, fkey, prefix, commits, markers=self._markers)
        results = await self._commit(keys=[], args=args)
        return self._count_commit(stream, commits, results)

    async def _commit_by_slot(
        self,
        stream: str,
        fkey: str,
        commits: list[tuple[str, str, bool, Effects | None]],
    ) -> list[tuple[str, str]]:
        """The cluster's two-step commit (bus/effects): each slot's share of the effects
        under that slot's markers, then, for the events none of whose shares failed,
        the ack in the stream's slot."""
        ttl = self.settings.processed_ttl_seconds
        default_slot = key_slot(stream.encode())
        shares: dict[int, list[tuple[int, Effects]]] = {}
        for n, (_, _, _, effects) in enumerate(commits):
            if effects:
                for slot, part in split_by_slot(effects, default_slot).items():
                    shares.setdefault(slot, []).append((n, part))

        async def apply(slot: int, share: list[tuple[int, Effects]]) -> list[Any]:
            prefix = keys.applied_marker(slot, stream, self.group, "")
            events = [(commits[n][0], commits[n][1], False, part) for n, part in share]
            args = commit_args("", self.group, ttl, "", prefix, events, markers=self._markers)
            return list(await self._commit(keys=[prefix], args=args))

        slots = list(shares.items())
        replies = await asyncio.gather(*(apply(slot, share) for slot, share in slots))
        outcome: dict[int, Any] = {}  # commit index -> 1 (applied somewhere), 0, or an error
        for (_, share), share_results in zip(slots, replies, strict=True):
            for (n, _), result in zip(share, share_results, strict=True):
                before = outcome.get(n, 0)
                if isinstance(before, bytes | str):
                    continue  # the first error is the one reported
                outcome[n] = result if isinstance(result, bytes | str) else (before or result)
        errors = {n for n, r in outcome.items() if isinstance(r, bytes | str)}
        settle = [c for n, c in enumerate(commits) if n not in errors]
        prefix = keys.processed_marker(stream, self.group, "")
        unapplied = [(e, i, f, None) for e, i, f, _ in settle]
        args = commit_args(stream, self.group, ttl, fkey, prefix, unapplied, markers=self._markers)
        # Routed by the stream marker's key: the stream's slot (its hash tag), and a key
        # the group's ACL user may name to EVALSHA (the stream itself it may only read).
        acked = list(await self._commit(keys=[prefix], args=args)) if settle else []
        results: list[Any] = []
        settled = iter(acked)
        for n, (_, _, _, effects) in enumerate(commits):
            stream_result = None if n in errors else next(settled)
            results.append(outcome[n] if effects else stream_result)
        return self._count_commit(stream, commits, results)

    def _count_commit(
        self,
        stream: str,
        commits: list[tuple[str, str, bool, Effects | None]],
        results: list[Any],
    ) -> list[tuple[str, str]]:
        """Count the fresh and duplicate deliveries; `(entry_id, error)` of refusals."""
        fresh = late_duplicates = 0
        errors: list[tuple[str, str]] = []
        for (_, entry_id, _, effects), result in zip(commits, results, strict=True):
            if isinstance(result, bytes | str):
                errors.append((entry_id, text(result)))
            elif result:
                fresh += 1
            elif effects is not None:
                # A peer applied it first: the marker existed and nothing was re-applied.
                late_duplicates += 1
        if fresh:
            self._stream_metrics[stream].consumed.inc(fresh)
        if late_duplicates:
            self._stream_metrics[stream].duplicates.inc(late_duplicates)
        return errors

    async def _record_failure(self, stream: str, fkey: str, event: Event[Any], error: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(fkey, event.entry_id, 1)
        pipe.pexpire(
            fkey, max(self.settings.claim_idle_ms * 10 * self.settings.max_deliveries, 86_400_000)
        )
        failures, _ = await pipe.execute()
        if int(failures) >= self.settings.max_deliveries:
            fields = {_ENVELOPE_KEY: event.raw or event.envelope.model_dump_json().encode()}
            await self._dead_letter(
                stream, event.entry_id, fields, error, int(failures), "failures"
            )

    async def _dead_letter(
        self,
        stream: str,
        entry_id: str,
        fields: dict[bytes, bytes],
        error: str,
        attempts: int,
        reason: str,
    ) -> None:
        """Move an entry to `<stream>.dlq` with why, and ack it, in one MULTI/EXEC (on
        a cluster: the dead letter, then the ack)."""
        raw = fields.get(_ENVELOPE_KEY)
        record: dict[str, str | bytes | int] = {
            "envelope": raw if raw is not None else repr(fields)[:4000],
            "stream": stream,
            "entry_id": entry_id,
            "group": self.group,
            "reason": reason,
            "error": error[:2000],
            "attempts": attempts,
            "failed_at": datetime.now(UTC).isoformat(),
        }
        dlq = keys.dead_letter_stream(stream)
        if self._cluster:
            # Two slots: the dead letter first, then the ack. Killed between the two,
            # the entry is delivered again and dead-lettered again: at least once, a
            # duplicate record carries the same `entry_id`. Never acked unrecorded.
            await self.redis.xadd(dlq, record, maxlen=_DLQ_MAXLEN, approximate=True)  # type: ignore[arg-type]
            pipe = self.redis.pipeline(transaction=True)
        else:
            pipe = self.redis.pipeline(transaction=True)
            pipe.xadd(dlq, record, maxlen=_DLQ_MAXLEN, approximate=True)  # type: ignore[arg-type]
        pipe.xack(stream, self.group, entry_id)
        pipe.hdel(keys.failure_counts(stream, self.group), entry_id)
        await pipe.execute()
        self._metrics.dead_lettered.labels(stream, self.group, reason).inc()
        log.error(
            "event dead-lettered",
            extra={
                "stream": stream,
                "group": self.group,
                "entry_id": entry_id,
                "reason": reason,
                "attempts": attempts,
                "error": error[:500],
            },
        )

    # --- helpers -----------------------------------------------------------

    def trim_args(self, stream: str) -> tuple[str | int, ...]:
        retention = self._retention.get(stream)
        if retention is None:
            retention = self._retention[stream] = retention_for(self.settings, stream)
        kwargs = retention.xadd_kwargs()
        if "maxlen" in kwargs:
            return ("MAXLEN", "~", kwargs["maxlen"])
        return ("MINID", "~", kwargs["minid"])

    def _warn_defences_off(self) -> None:
        """Say loudly when a defence is off: only a chaos drill should ever do that."""
        off = [
            setting
            for setting, on in (
                ("ASTRA_BUS__REAPER_ENABLED=false", self._redeliver),
                ("ASTRA_BUS__IDEMPOTENCY_MARKERS=false", self._markers),
            )
            if not on
        ]
        if off:
            log.warning(
                "consumer defences switched off (%s): events may be lost or applied twice",
                ", ".join(off),
                extra={"group": self.group, "consumer": self.name},
            )

    def _note_error(self, error: BaseException) -> None:
        # Logged by the loop's Outage, once per outage, not here once per retry.
        self.last_error = f"{type(error).__name__}: {error}"[:500]

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)


# Why an entry goes to the dead-letter stream (the `reason` label).
DEAD_LETTER_REASONS = ("poison", "unknown_producer", "failures", "effect_error")


class _StreamMetrics:
    """The per-event metric children of one (stream, group)."""

    __slots__ = ("age", "consumed", "duplicates", "duration", "failed")

    def __init__(self, metrics: BusMetrics, stream: str, group: str) -> None:
        self.consumed = metrics.consumed.labels(stream, group)
        self.duplicates = metrics.duplicates.labels(stream, group)
        self.failed = metrics.failed.labels(stream, group)
        self.duration = metrics.handler_duration.labels(stream, group)
        self.age = metrics.event_age.labels(stream, group)
        # The counters alerts take `increase()` of exist at 0 from the start: a series
        # born at its first increment has no earlier sample, so Prometheus sees no
        # increase and the alert stays silent (found: a drill's 20 poison entries, all
        # dead-lettered, and BusDeadLettersGrowing never fired).
        for reason in DEAD_LETTER_REASONS:
            metrics.dead_lettered.labels(stream, group, reason)
        metrics.trimmed_before_ack.labels(stream, group)


def _entries(response: Any) -> list[RawEntry]:
    if not response:
        return []
    # redis-py returns [[stream, [(id, fields), ...]]] (RESP2) or a dict (RESP3)
    if isinstance(response, dict):
        return [entry for entries in response.values() for entry in entries[0]]
    return [entry for _, entries in response for entry in entries]


def _with_attempt(event: Event[Any], attempt: int) -> Event[Any]:
    return Event(event.stream, event.entry_id, event.envelope, event.data, attempt, event.raw)


def _log_fields(stream: str, group: str, event: Event[Any]) -> dict[str, Any]:
    return {
        "stream": stream,
        "group": group,
        "entry_id": event.entry_id,
        "event_id": event.event_id,
        "attempt": event.attempt,
    }
