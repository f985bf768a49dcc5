"""The dual write trading falls back to when its outbox is switched off (a chaos drill).

    outbox on  (default):  order rows + outbox rows ──commit──▶ relay ──▶ XADD (at least once)
    outbox off (drill):    order rows ──commit──▶ XADD in the request path ──▶ lost if refused

This is the anti-pattern the transactional outbox exists to avoid, kept only so a
drill run `--without-defence` (`ASTRA_OUTBOX__ENABLED=false`) can show what the
outbox prevents: with Redis unreachable when the order commits, its events are
gone. The order stays committed and the API still answers 201, as a real dual
write does; the loss is logged, counted, and left for the drill's event
accounting to find.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from functools import cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel

from backbone.bus.publisher import Publisher
from backbone.bus.streams import EventType
from backbone.errors import PublishError

log = logging.getLogger("services.trading.dualwrite")


@cache
def bypassed_publish_failures(registry: CollectorRegistry) -> Counter:
    """One counter per registry (prometheus refuses a second registration)."""
    return Counter(
        "astra_outbox_bypassed_publish_failures_total",
        "Events lost because the outbox was switched off and Redis refused the "
        "publish that followed the commit (ASTRA_OUTBOX__ENABLED=false only).",
        ["stream"],
        registry=registry,
    )


class DirectPublish:
    """Publishes a committed order's events straight to Redis; a refusal loses them.

    direct = DirectPublish(parts.publisher, parts.metrics_registry)
    await direct.publish_committed(order_id, [(TradeExecuted, data), (PositionUpdated, data)])
    """

    def __init__(self, publisher: Publisher, registry: CollectorRegistry) -> None:
        self._publisher = publisher
        self._failures = bypassed_publish_failures(registry)

    async def publish_committed(
        self, order_id: str, events: Sequence[tuple[EventType[Any], BaseModel]]
    ) -> bool:
        """XADD the events of an order already committed; False when they were lost."""
        try:
            await self._publisher.publish_batch(events)
        except PublishError as e:
            # No retry, no row to retry from: this is the loss the outbox prevents.
            for stream, n in collections.Counter(et.stream_key for et, _ in events).items():
                self._failures.labels(stream).inc(n)
            log.error(
                "outbox off: events of a committed order were lost (Redis refused them)",
                extra={"order_id": order_id, "events": len(events), "error": str(e)[:500]},
            )
            return False
        return True

    def __repr__(self) -> str:
        return "<DirectPublish outbox=off>"
