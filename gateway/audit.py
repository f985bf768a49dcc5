"""Audit events: published after the client has its answer, recorded by a consumer group.

    proxy ── answer sent ──> AuditPublisher.record ──(task)──> XADD astra.gateway.action_audited.v1
             │ the gateway refused it itself                         │ audit_trail_recorders
             └──> astra_gateway_audit_skipped_total                  v
    GET /api/v1/audit <── AuditTrail.query <── ZSETs (global, per subject) <── ctx.effects

Publishing never sits on the client path: `record` only starts a task, after the
last body byte went out, so the event says what happened, never what was tried.
Failures are counted (`astra_gateway_audit_publish_failures_total`) and logged,
and at most `max_pending` publications wait at once (beyond that they are dropped
and counted, rather than letting a Redis outage grow memory without bound).

Only exchanges a service instance was asked about are published. What the gateway
refused by itself (a 401 it decided, a 429, a 413, no instance to ask) is counted
by action and reason instead: anonymous traffic costs nothing to send, and if it
were written it would roll the capped trail and push real history out.

Who an entry is about: for register and login, the account in the answer (the new
id; the issued token's verified subject), never a bearer header sent along with
the request, since a caller can send anyone's token with someone else's password.
Those two also carry the username the request named (`attempted_username`), so a
failed login says whom it was against; the password is never read out of the body.

The recorder writes through `ctx.effects`, so an event's entries are added in the
same Lua script that marks it processed and acks it: exactly once per event. Each
write also trims what is older than `retention_seconds` and what is over the caps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from backbone import keys
from backbone.auth import Claims
from backbone.bus.consumer import Consumer, Event, HandlerContext
from backbone.bus.envelope import new_event_id
from backbone.bus.publisher import Publisher
from backbone.config import BusSettings
from backbone.telemetry.correlation import get_correlation_id
from contracts.gateway import ActionAudited, ActionAuditedData
from gateway.config import AuditSettings
from gateway.metrics import GatewayMetrics

log = logging.getLogger("gateway.audit")

GROUP = "audit_trail_recorders"
BODY_LIMIT = 16 * 1024  # bytes kept of an account action's request and answer
# The longest username the users service accepts (its `TokenCreate`): a longer
# "username" cannot name an account, and is cut so a pasted secret is not kept whole.
USERNAME_MAX = 32


# Keys of the trail (proposed for backbone/keys.py, where every key belongs).
def audit_trail_key(subject: str | None = None) -> str:
    """Sorted set event JSON -> occurred_at (epoch ms); capped, newest kept."""
    if subject is None:
        return f"{keys.PREFIX}:audit:all"
    return f"{keys.PREFIX}:audit:subject:{subject}"


@dataclass(slots=True)
class AuditedExchange:
    """What the proxy saw of one request to an audited route, filled in as it goes.

    exchange = AuditedExchange(
        "login", "POST", "/api/v1/users/login", "203.0.113.9", keeps_bodies=True
    )  # action, template and keeps_bodies from the route's `RouteSpec`
    exchange.refused = "rate_limited"     # the gateway answered by itself
    exchange.refused = None               # a service instance was asked
    auditor.record(exchange)              # after the answer went out
    """

    action: str
    method: str
    route: str  # the template
    client_ip: str
    started: float = 0.0  # perf_counter
    # An account action (the route's `RouteSpec.audit_bodies`): its subject and username
    # come from the bodies, not from a bearer token, so the bodies are kept.
    keeps_bodies: bool = False
    token_subject: str | None = None  # the verified bearer token's, when one was sent
    request_body: bytes = b""  # kept for account actions only
    status: int = 500
    answer_body: bytes = b""  # kept for account actions only
    # Why the gateway answered by itself; None once an instance was asked. Until the
    # proxy says otherwise, nothing reached a service (an error before forwarding).
    refused: str | None = "gateway_error"

    def note_answer(self, status: int, body: bytes) -> None:
        self.status = status
        if self.keeps_bodies and len(self.answer_body) < BODY_LIMIT:
            self.answer_body += body[: BODY_LIMIT - len(self.answer_body)]


def attempted_username(body: bytes) -> str | None:
    """The `username` of a register or login body, as the users service looks it up.

    The service does not fold case or trim (usernames are `[a-z0-9_]` only, compared
    as sent), so neither does this; anything but a JSON string is no username.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    name = doc.get("username") if isinstance(doc, dict) else None
    if not isinstance(name, str) or not name:
        return None
    return name if len(name) <= USERNAME_MAX else name[:USERNAME_MAX] + "…"


class AuditPublisher:
    """auditor = AuditPublisher(publisher, settings.audit, metrics, verify=auth.verify)
    auditor.record(exchange)   # returns at once; publishes (or counts) in the background
    auditor.submit(make)       # the same for an event built by `make`
    await auditor.aclose()     # waits (bounded) for what is in flight
    """

    def __init__(
        self,
        publisher: Publisher,
        settings: AuditSettings,
        metrics: GatewayMetrics,
        *,
        verify: Callable[[str], Awaitable[Claims]] | None = None,
    ):
        self._publisher = publisher
        self._s = settings
        self._metrics = metrics
        self._verify = verify  # reads the subject of a token a login answered with
        self._pending: set[asyncio.Task[None]] = set()
        self.published = 0
        self.failing = 0  # publications that failed since the last one that worked

    def record(self, exchange: AuditedExchange) -> None:
        """Publish what a service decided; count what the gateway refused by itself."""
        if exchange.refused is not None:
            self._metrics.audit_skipped.labels(exchange.action, exchange.refused).inc()
            return
        latency_ms = round((time.perf_counter() - exchange.started) * 1000, 3)
        occurred_at = datetime.now(UTC)
        cid = get_correlation_id() or ""

        async def make() -> ActionAuditedData:
            if exchange.keeps_bodies:
                subject = await self._subject_of_answer(exchange)
                username = attempted_username(exchange.request_body)
            else:
                subject, username = exchange.token_subject, None
            return ActionAuditedData(
                action=exchange.action,
                subject=subject,
                method=exchange.method,
                route=exchange.route,
                status=exchange.status,
                latency_ms=latency_ms,
                client_ip=exchange.client_ip,
                correlation_id=cid,
                occurred_at=occurred_at,
                attempted_username=username,
            )

        self.submit(make)

    async def _subject_of_answer(self, exchange: AuditedExchange) -> str | None:
        """Who registered (the new id) or logged in (the issued token's verified subject)."""
        if not 200 <= exchange.status < 300:
            return None  # nobody was registered or logged in
        try:
            doc = orjson.loads(exchange.answer_body)
            if exchange.action == "register":
                return str(doc["id"])
            if self._verify is None:
                raise RuntimeError("no verifier for the issued token")
            return (await self._verify(str(doc["access_token"]))).subject
        except Exception as e:
            log.warning("audit: no subject in the %s answer: %r", exchange.action, e)
        return None

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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._s.publish_deadline
        try:
            async with asyncio.timeout(self._s.publish_timeout):
                data = await make()
        except Exception as e:
            self._lost(e)
            return
        event_id = new_event_id()  # one id for every attempt: the recorder applies it once
        pause = 0.1
        while True:
            try:
                async with asyncio.timeout(self._s.publish_timeout):
                    # The envelope's time is the action's, not the publication's: a slow
                    # Redis delays both, and the freshness SLO must see that (found: a
                    # drill's audit events, handled late, read fresh).
                    await self._publisher.publish(
                        ActionAudited, data, occurred_at=data.occurred_at, event_id=event_id
                    )
                self.published += 1
                self.failing = 0
                return
            except Exception as e:
                self.failing += 1  # readiness says "degraded" while this lasts
                if loop.time() + pause >= deadline:
                    self._lost(e)
                    return
                log.info("audit publication retried: %r", e)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _lost(self, error: BaseException) -> None:
        self._metrics.audit_failures.inc()
        log.warning("audit event not published: %r", error)

    async def aclose(self) -> None:
        """Waits (bounded) for what is in flight; what is still retrying then is lost,
        and counted as such."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=self._s.publish_timeout * 2)
        unfinished = [task for task in self._pending if not task.done()]
        for task in unfinished:
            task.cancel()
        if unfinished:
            self._metrics.audit_failures.inc(len(unfinished))
            log.warning("audit: %d events still unpublished at shutdown", len(unfinished))


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
        # Older than this (epoch ms, exclusive) is trimmed, by the recorder's clock: an
        # event that arrives after its retention is added and trimmed in one script.
        cutoff = int((time.time() - settings.retention_seconds) * 1000)
        targets = [(audit_trail_key(), settings.max_entries)]
        if event.data.subject:
            targets.append((audit_trail_key(event.data.subject), settings.max_entries_per_subject))
        for key, cap in targets:
            ctx.effects.call("ZADD", key, score, member)
            ctx.effects.call("ZREMRANGEBYSCORE", key, "-inf", f"({cutoff}")
            ctx.effects.call("ZREMRANGEBYRANK", key, 0, -(cap + 1))
        if event.data.subject:
            # Every entry of an idle subject is past the retention by then, too.
            ttl = min(settings.subject_ttl_seconds, settings.retention_seconds)
            ctx.effects.call("EXPIRE", targets[1][0], ttl)

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
    """What operators read: newest first, globally or for one subject, within the retention."""

    def __init__(self, redis: aioredis.Redis, *, retention_seconds: float | None = None) -> None:
        self._redis = redis
        self._retention = retention_seconds

    async def query(
        self, subject: str | None, limit: int, *, before: datetime | None = None
    ) -> list[dict[str, Any]]:
        key = audit_trail_key(subject)
        high: str | int = "+inf" if before is None else int(before.timestamp() * 1000) - 1
        # Trimming happens on writes; a quiet trail must not show what is past retention.
        low: str | int = "-inf"
        if self._retention is not None:
            low = int((time.time() - self._retention) * 1000)
        raw = await self._redis.zrevrangebyscore(key, high, low, start=0, num=limit)
        return [orjson.loads(member) for member in raw if isinstance(member, bytes | str)]
