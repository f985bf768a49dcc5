"""Writing events into the outbox, inside the caller's transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from opentelemetry import trace
from pydantic import BaseModel
from sqlalchemy import Table, insert
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
        self._tracer = resolve_tracer(TRACER_NAME, tracer)

    async def add(
        self, session: AsyncSession | AsyncConnection, event_type: EventType[D], data: D
    ) -> str:
        """INSERT one event into the caller's open transaction; return its event_id.

        The PRODUCER span opened here is the one consumers' spans hang under: its
        traceparent is written into the envelope.
        """
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
            now = datetime.now(UTC)
            _, envelope = encode(
                event_type,
                data,
                producer=self.producer,
                correlation_id=ensure_correlation_id(),
                causation_id=get_causation_id(),
                traceparent=current_traceparent(),
                event_id=event_id,
                occurred_at=now,
            )
            await session.execute(
                insert(self.table).values(
                    event_id=event_id,
                    stream=stream,
                    envelope=envelope,
                    created_at=now,
                    attempts=0,
                )
            )
        return event_id

    def __repr__(self) -> str:
        return f"<Outbox table={self.table.fullname} producer={self.producer}>"
