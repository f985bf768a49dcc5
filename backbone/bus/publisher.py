"""Publishing events to their streams, one at a time or pipelined in batches."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from opentelemetry import trace
from prometheus_client import REGISTRY, CollectorRegistry
from pydantic import BaseModel
from redis.exceptions import RedisError

from backbone import keys
from backbone._text import text
from backbone.bus import envelope
from backbone.bus.metrics import bus_metrics
from backbone.bus.streams import EventType, Retention, retention_for
from backbone.config import BusSettings
from backbone.errors import PublishError
from backbone.replicated_write import ReplicatedWriter
from backbone.telemetry.correlation import ensure_correlation_id, get_causation_id
from backbone.telemetry.propagation import current_traceparent
from backbone.telemetry.tracing import resolve_tracer

_PRODUCER = trace.SpanKind.PRODUCER


@dataclass(frozen=True, slots=True)
class Published:
    event_id: str
    stream: str
    entry_id: str
    # Replicas that acknowledged it within the timeout (WAIT), of `asked`; None when none
    # were asked for (`BusSettings.replica_acks` 0). Fewer: a failover now may lose it.
    replicated: int | None = None
    asked: int = 0

    @property
    def durable(self) -> bool:
        """On as many replicas as were asked for (vacuously, when none were)."""
        return self.replicated is None or self.replicated >= self.asked


class Publisher:
    """Publishes validated events with the current correlation and trace context.

        publisher = Publisher(redis, producer="trading", settings=BusSettings())
        await publisher.publish(TradeExecuted, TradeExecutedData(...))
        await publisher.publish_batch([(XpGained, a), (LevelUp, b)])
        await publisher.aclose()   # its per-primary connections, on a Redis Cluster

    Retention is checked against the lag budget when the publisher is built, so a
    misconfigured stream fails at start-up rather than trimming unread events.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        producer: str,
        settings: BusSettings,
        tracer: trace.Tracer | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._redis = redis
        self._producer = producer
        self._settings = settings
        self._tracer = resolve_tracer("backbone.bus", tracer)
        self._tracing = not isinstance(self._tracer, trace.NoOpTracer)
        self._published: dict[str, Any] = {}  # stream -> counter child (labels() is slow)
        self._metrics = bus_metrics(registry)
        self._retention: dict[str, Retention] = {}
        for stream in settings.retention:
            self._retention[stream] = retention_for(settings, stream)
        retention_for(settings, "default")  # the default must respect the budget too
        self._writer = ReplicatedWriter(redis)  # XADD then WAIT, shard by shard

    async def aclose(self) -> None:
        """Close what the publisher opened itself; the Redis client is the caller's."""
        await self._writer.aclose()

    def _xadd_args(self, stream: str) -> tuple[Any, ...]:
        """`XADD stream MAXLEN|MINID ~ n` up to the ID, built from the stream's retention."""
        retention = self._retention.get(stream)
        if retention is None:
            retention = self._retention[stream] = retention_for(self._settings, stream)
        kwargs = retention.xadd_kwargs()
        if "maxlen" in kwargs:
            return ("XADD", stream, "MAXLEN", "~", kwargs["maxlen"])
        return ("XADD", stream, "MINID", "~", kwargs["minid"])

    def _published_counter(self, stream: str) -> Any:
        child = self._published.get(stream)
        if child is None:
            child = self._published[stream] = self._metrics.published.labels(stream, "direct")
        return child

    async def publish(
        self,
        event_type: EventType[Any],
        data: BaseModel,
        *,
        occurred_at: datetime | None = None,
        event_id: str | None = None,
    ) -> Published:
        """`occurred_at`: when the event happened, if before now (an action published in
        the background): consumers measure freshness from it, so a publication delayed
        by a slow Redis must not make a late event look fresh. `event_id`: the same id
        on every retry of one event (a timed-out XADD may have landed; consumers apply
        one id once)."""
        stream = event_type.stream_key
        with self._tracer.start_as_current_span(f"{stream} publish", kind=_PRODUCER) as span:
            eid, body = envelope.encode(
                event_type,
                data,
                producer=self._producer,
                correlation_id=ensure_correlation_id(),
                causation_id=get_causation_id(),
                traceparent=current_traceparent() if self._tracing else None,
                occurred_at=occurred_at,
                event_id=event_id,
            )
            if span.is_recording():
                span.set_attributes(_span_attributes(stream, eid))
            acks = self._settings.replica_acks or 0
            xadd = (*self._xadd_args(stream), "*", keys.ENVELOPE_FIELD, body)
            try:
                replicated: int | None = None
                if not acks:  # one command, no pipeline object: the common, cheap case
                    entry_id = await self._redis.execute_command(*xadd)  # type: ignore[no-untyped-call]
                else:
                    done = await self._writer.write(
                        [xadd], acks, self._settings.replica_ack_timeout_ms
                    )
                    entry_id, replicated = done.replies[0], done.replicated
                    if isinstance(entry_id, Exception):
                        raise entry_id
            except (RedisError, OSError) as e:
                self._metrics.publish_failures.labels(stream, "direct").inc()
                raise PublishError(f"{stream}: Redis did not accept {eid}: {e}") from e
        self._published_counter(stream).inc()
        if replicated is not None and replicated < acks:
            self._metrics.unreplicated.labels(stream, "direct").inc()
        return Published(eid, stream, text(entry_id), replicated, acks)

    async def publish_batch(
        self, events: Sequence[tuple[EventType[Any], BaseModel]]
    ) -> list[Published]:
        """Publish in one pipelined round trip; all accepted, or PublishError.

        Not a transaction: on error some events may have been accepted; the
        error says so, and consumers dedupe by event_id if the caller retries.
        """
        if not events:
            return []
        with self._tracer.start_as_current_span("publish batch", kind=_PRODUCER) as span:
            if span.is_recording():
                span.set_attributes(
                    {"messaging.system": "redis", "messaging.batch.message_count": len(events)}
                )
            # The context is the same for the whole batch: read it once.
            correlation_id = ensure_correlation_id()
            causation_id = get_causation_id()
            traceparent = current_traceparent() if self._tracing else None
            occurred_at = datetime.now(UTC)  # one instant for events published together
            commands: list[tuple[Any, ...]] = []
            ids: list[tuple[str, str]] = []
            prefixes: dict[str, tuple[Any, ...]] = {}
            for event_type, data in events:
                stream = event_type.stream_key
                event_id, body = envelope.encode(
                    event_type,
                    data,
                    producer=self._producer,
                    correlation_id=correlation_id,
                    causation_id=causation_id,
                    traceparent=traceparent,
                    occurred_at=occurred_at,
                )
                ids.append((event_id, stream))
                prefix = prefixes.get(stream)
                if prefix is None:
                    prefix = prefixes[stream] = self._xadd_args(stream)
                commands.append((*prefix, "*", keys.ENVELOPE_FIELD, body))
            acks = self._settings.replica_acks or 0
            replicated: int | None = None
            try:
                if not acks:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for command in commands:
                            pipe.execute_command(*command)
                        entry_ids = await pipe.execute(raise_on_error=True)
                else:
                    done = await self._writer.write(
                        commands, acks, self._settings.replica_ack_timeout_ms
                    )
                    entry_ids, replicated = done.replies, done.replicated
                    failed = next((r for r in entry_ids if isinstance(r, Exception)), None)
                    if failed is not None:
                        raise failed
            except (RedisError, OSError) as e:
                for stream, count in Counter(stream for _, stream in ids).items():
                    self._metrics.publish_failures.labels(stream, "direct").inc(count)
                raise PublishError(f"batch of {len(events)} not fully accepted: {e}") from e
        for stream, count in Counter(stream for _, stream in ids).items():
            self._published_counter(stream).inc(count)
            if replicated is not None and replicated < acks:
                self._metrics.unreplicated.labels(stream, "direct").inc(count)
        return [
            Published(event_id, stream, text(entry_id), replicated, acks)
            for (event_id, stream), entry_id in zip(ids, entry_ids, strict=True)
        ]


def _span_attributes(stream: str, event_id: str) -> dict[str, str]:
    return {
        "messaging.system": "redis",
        "messaging.destination.name": stream,
        "messaging.operation.type": "publish",
        "messaging.message.id": event_id,
    }
