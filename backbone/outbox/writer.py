"""Writing events into the outbox, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar

from opentelemetry import trace
from pydantic import BaseModel
from sqlalchemy import Table, insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from backbone.bus.envelope import encode, new_event_id
from backbone.bus.streams import EventType
from backbone.telemetry.correlation import ensure_correlation_id, get_causation_id
from backbone.telemetry.propagation import current_traceparent
from backbone.telemetry.tracing import resolve_tracer

D = TypeVar("D", bound=BaseModel)

TRACER_NAME = "backbone.outbox"


class Outbox:
    """Stores events in the same SQL transaction as the change they describe.

    outbox = Outbox(outbox_table(Base.metadata), producer="trading")

    async with session.begin():
        session.add(order)
        await outbox.add(session, OrderPlaced, OrderPlacedData(order_id=order.id))
    relay.notify()  # optional: publish now rather than at the next poll

    Nothing leaves the process here: the row becomes visible to the relay when
    the caller commits and disappears with a rollback (savepoints included).
    """

    def __init__(self, table: Table, producer: str, *, tracer: trace.Tracer | None = None) -> None:
        self.table = table
        self.producer = producer
        self._insert = insert(table)  # built once: executed with each row's values
        self._tracer = resolve_tracer(TRACER_NAME, tracer)

    async def add(
        self, session: AsyncSession | AsyncConnection, event_type: EventType[D], data: D
    ) -> str:
        """INSERT one event into the caller's open transaction; return its event_id.

        The PRODUCER span opened here is the one consumers' spans hang under: its
        traceparent is written into the envelope.
        """
        with self._span(event_type) as (event_id, row):
            await session.execute(self._insert, row(data))
        return event_id

    def add_sync(self, conn: Connection, event_type: EventType[D], data: D) -> str:
        """`add` for a synchronous unit of work (a `Connection` in its transaction)."""
        with self._span(event_type) as (event_id, row):
            conn.execute(self._insert, row(data))
        return event_id

    @contextmanager
    def _span(
        self, event_type: EventType[D]
    ) -> Iterator[tuple[str, Callable[[D], dict[str, object]]]]:
        stream = event_type.stream_key
        event_id = new_event_id()
        with self._tracer.start_as_current_span(
            f"{stream} publish",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "redis",
                "messaging.destination.name": stream,
                "messaging.operation.type": "publish",
                "messaging.message.id": event_id,
            },
        ):

            def row(data: D) -> dict[str, object]:
                now = datetime.now(UTC)
                _, envelope = encode(
                    event_type,
                    data,
                    producer=self.producer,
                    correlation_id=ensure_correlation_id(),
                    causation_id=get_causation_id(),
                    traceparent=current_traceparent(),  # inside the span: its context
                    event_id=event_id,
                    occurred_at=now,
                )
                return {
                    "event_id": event_id,
                    "stream": stream,
                    "envelope": envelope,
                    "created_at": now,
                    "attempts": 0,
                }

            yield event_id, row

    def __repr__(self) -> str:
        return f"<Outbox table={self.table.fullname} producer={self.producer}>"
