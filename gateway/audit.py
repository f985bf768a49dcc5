"""Audit events: published after the client has its answer, recorded by a consumer group.

    proxy ── answer sent ──> AuditPublisher.submit ──(task)──> XADD astra.gateway.action_audited.v1
                                                                   │ audit_trail_recorders
    GET /api/v1/audit <── AuditTrail.query <── ZSETs (global, per subject) <── ctx.effects

Publishing never sits on the client path: `submit` only starts a task, after the
last body byte went out, so the event says what happened, never what was tried.
Failures are counted (`astra_gateway_audit_publish_failures_total`) and logged,
and at most `max_pending` publications wait at once (beyond that they are dropped
and counted, rather than letting a Redis outage grow memory without bound).

The recorder writes through `ctx.effects`, so an event's entries are added in the
same Lua script that marks it processed and acks it: exactly once per event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from backbone import keys
from backbone.bus.consumer import Consumer, Event, HandlerContext
from backbone.bus.publisher import Publisher
from backbone.config import BusSettings
from contracts.gateway import ActionAudited, ActionAuditedData
from gateway.config import AuditSettings
from gateway.metrics import GatewayMetrics

log = logging.getLogger("gateway.audit")

GROUP = "audit_trail_recorders"


# Keys of the trail (proposed for backbone/keys.py, where every key belongs).
def audit_trail_key(subject: str | None = None) -> str:
    """Sorted set event JSON -> occurred_at (epoch ms); capped, newest kept."""
    if subject is None:
        return f"{keys.PREFIX}:audit:all"
    return f"{keys.PREFIX}:audit:subject:{subject}"


class AuditPublisher:
    """auditor = AuditPublisher(publisher, settings.audit, metrics)
    auditor.submit(data)     # returns at once; publishes in the background
    await auditor.aclose()   # waits (bounded) for what is in flight
    """

    def __init__(self, publisher: Publisher, settings: AuditSettings, metrics: GatewayMetrics):
        self._publisher = publisher
        self._s = settings
        self._metrics = metrics
        self._pending: set[asyncio.Task[None]] = set()
        self.published = 0

    def submit(self, make: Callable[[], Awaitable[ActionAuditedData]]) -> None:
        """Build (`make` may await, e.g. to read the subject of a fresh token) and publish."""
        if len(self._pending) >= self._s.max_pending:
            self._metrics.audit_failures.inc()
            log.warning("audit event dropped: %d publications pending", len(self._pending))
            return
        # The task copies this context: the event carries the request's correlation ID.
        task = asyncio.create_task(self._publish(make), name="audit-publish")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, make: Callable[[], Awaitable[ActionAuditedData]]) -> None:
        try:
            async with asyncio.timeout(self._s.publish_timeout):
                await self._publisher.publish(ActionAudited, await make())
            self.published += 1
        except Exception as e:
            self._metrics.audit_failures.inc()
            log.warning("audit event not published: %r", e)

    async def aclose(self) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=self._s.publish_timeout * 2)
        for task in list(self._pending):
            task.cancel()


def _entry(event: Event[ActionAuditedData]) -> tuple[int, bytes]:
    data = event.data
    body = {"event_id": event.event_id, **data.model_dump(mode="json")}
    return int(data.occurred_at.timestamp() * 1000), orjson.dumps(body)


def audit_trail_recorder(
    redis: aioredis.Redis,
    *,
    consumer: str,
    bus: BusSettings,
    settings: AuditSettings,
    registry: CollectorRegistry,
) -> Consumer:
    """The `audit_trail_recorders` group member run inside each gateway process."""

    async def record(event: Event[ActionAuditedData], ctx: HandlerContext) -> None:
        score, member = _entry(event)
        targets = [(audit_trail_key(), settings.max_entries)]
        if event.data.subject:
            targets.append((audit_trail_key(event.data.subject), settings.max_entries_per_subject))
        for key, cap in targets:
            ctx.effects.call("ZADD", key, score, member)
            ctx.effects.call("ZREMRANGEBYRANK", key, 0, -(cap + 1))
        if event.data.subject:
            ctx.effects.call("EXPIRE", targets[1][0], settings.subject_ttl_seconds)

    return Consumer(
        redis,
        group=GROUP,
        consumer=consumer,
        handlers={ActionAudited: record},
        settings=bus,
        producer="gateway",
        registry=registry,
    )


class AuditTrail:
    """What operators read: newest first, globally or for one subject."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def query(
        self, subject: str | None, limit: int, *, before: datetime | None = None
    ) -> list[dict[str, Any]]:
        key = audit_trail_key(subject)
        high: str | int = "+inf" if before is None else int(before.timestamp() * 1000) - 1
        raw = await self._redis.zrevrangebyscore(key, high, "-inf", start=0, num=limit)
        return [orjson.loads(member) for member in raw if isinstance(member, bytes | str)]
