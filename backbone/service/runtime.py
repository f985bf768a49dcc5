"""The parts a running service owns, opened and closed in one explicit order."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic

import redis.asyncio as aioredis
from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import RedisError
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from backbone.auth import JwksCache, JwtVerifier, users_jwks_url
from backbone.bus.consumer import Consumer, Handler
from backbone.bus.monitor import StreamMonitor
from backbone.bus.publisher import Publisher
from backbone.bus.streams import EventType
from backbone.lifecycle import Lifecycle
from backbone.outbox import DEFAULT_TABLE_NAME, Outbox, OutboxRelay, outbox_table
from backbone.registry import Discovery, InstanceInfo, Registrar
from backbone.service.context import (
    NO_CONTEXT,
    C,
    ContextSpec,
    OutboxParts,
    Parts,
    S,
    SqlParts,
)

log = logging.getLogger("backbone.service")
_SCHEMA_LOCK = 0x4153_5452_4153_4348  # pg advisory lock key for schema creation ("ASTRASCH")
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


@dataclass(frozen=True)
class ConsumerSpec:
    group: str
    handlers: Mapping[EventType[Any], Handler]
    # True when a handler reads state that earlier events' effects write: each
    # event is then committed before the next one is handled.
    commit_each: bool = False


@dataclass(frozen=True)
class ServiceSpec(Generic[S, C]):
    """What makes one service: its context, routes, consumers and hooks.

    The context (`ContextSpec`, backbone/service/context.py) is built once at start;
    consumers, hooks and routes (through the service's alias) all use that object.
    """

    name: str
    description: str = ""
    context: ContextSpec[S, C] = NO_CONTEXT
    routers: Sequence[APIRouter] = ()
    consumers: Callable[[C], Sequence[ConsumerSpec]] | None = None
    published: Sequence[EventType[Any]] = ()  # streams the monitor samples
    on_start: Callable[[C], Awaitable[None]] | None = None
    on_stop: Callable[[C], Awaitable[None]] | None = None
    # What `CurrentUser` verifies tokens with; default the users service's JWKS.
    verifier: Callable[[C], JwtVerifier] | None = None
    # Domain error type -> handler (usually mapping it to a ProblemError response).
    exception_handlers: Mapping[type[Exception], ExceptionHandler] = field(default_factory=dict)
    metadata_tags: Mapping[str, str] = field(default_factory=dict)


class Runtime(Generic[S, C]):
    """Opened by the app's lifespan (`request.app.state.runtime`); builds the spec's context.

    start: Redis, database, outbox relay, context + hooks, consumers, monitor, registrar;
    aclose: the same in reverse.
    """

    def __init__(self, spec: ServiceSpec[S, C], settings: S, registry: CollectorRegistry):
        self.spec = spec
        self.settings = settings
        self.metrics_registry = registry
        self.redis: aioredis.Redis = settings.redis(connect_timeout=2, socket_timeout=5, wait=2.0)
        self.publisher = Publisher(
            self.redis, producer=spec.name, settings=settings.bus, registry=registry
        )
        self.verifier = JwtVerifier(
            JwksCache(self._jwks_url), issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        self._users = Discovery(  # refreshed by `_jwks_url` only: never started
            self.redis, settings.registry, services=["users"], registry=CollectorRegistry()
        )
        self.engine: AsyncEngine | None = None  # when the context declares tables
        self.consumers: list[Consumer] = []
        self._parts = Lifecycle(spec.name)
        self._context: tuple[C] | None = None  # a 1-tuple once built: the context may be None

    @property
    def context(self) -> C:
        """What the spec's `build` made; routes reach it through their service's alias."""
        if self._context is None:
            raise RuntimeError(f"{self.spec.name} has not started: it has no context yet")
        return self._context[0]

    @property
    def parts(self) -> Parts[S]:
        """What every service has; the database and outbox parts extend it when declared."""
        return Parts(
            settings=self.settings,
            redis=self.redis,
            publisher=self.publisher,
            metrics_registry=self.metrics_registry,
            verifier=self.verifier,
        )

    async def start(self) -> None:
        s, spec = self.settings, self.spec
        self._parts.push(self.redis.aclose, "redis")  # first in, last out; closed if ping fails
        self._parts.push(self.publisher.aclose, "publisher")
        await self._wait_for_redis(s.registry.startup_wait_seconds)
        # The database and the outbox relay, as the context declares them, then `build`.
        context = await spec.context.open(self)
        self._context = (context,)
        if spec.verifier is not None:
            self.verifier = spec.verifier(context)
        if spec.on_start is not None:
            await spec.on_start(context)
        if spec.on_stop is not None:
            on_stop = spec.on_stop
            self._parts.push(lambda: on_stop(context), "on_stop")
        watched: list[tuple[str, str]] = [(et.stream_key, "") for et in spec.published]
        for cspec in spec.consumers(context) if spec.consumers else ():
            consumer = Consumer(
                self.redis,
                group=cspec.group,
                consumer=s.instance_id,
                handlers=cspec.handlers,
                settings=s.bus,
                producer=spec.name,
                commit_each=cspec.commit_each,
                registry=self.metrics_registry,
            )
            await consumer.start()
            self.consumers.append(consumer)
            self._parts.push(consumer.aclose, f"consumer {cspec.group}")
            watched += [(stream, cspec.group) for stream in consumer.streams]
        if watched:
            monitor = StreamMonitor(
                self.redis,
                watched,
                interval_ms=s.bus.metrics_sample_interval_ms,
                registry=self.metrics_registry,
            )
            await monitor.start()
            self._parts.push(monitor.aclose, "stream monitor")
        # Register last: the gateway only routes to us once everything above runs.
        registrar = Registrar(
            self.redis,
            InstanceInfo(
                service=spec.name,
                instance_id=s.instance_id,
                url=s.public_url,
                version=s.version,
                started_at=datetime.now(UTC),
                metadata={**spec.metadata_tags, **s.registry_metadata()},
                status="ready",
            ),
            s.registry,
            registry=self.metrics_registry,
        )
        await registrar.start()
        self._parts.push(registrar.aclose, "registrar")
        log.info("service started", extra={"url": s.public_url, "consumers": len(self.consumers)})

    async def open_database(self, metadata: MetaData) -> SqlParts[S]:
        """The engine (closed on stop) with `metadata`'s tables created."""
        url = self.settings.database_url
        if url.startswith("sqlite"):
            Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        engine = self.engine = create_async_engine(url, pool_pre_ping=True)
        self._parts.push(engine.dispose, "database")
        await self._create_schema(engine, metadata)
        return SqlParts(
            **_fields_of(self.parts),
            engine=engine,
            sessions=async_sessionmaker(engine, expire_on_commit=False),
        )

    async def open_outbox(self, sql: SqlParts[S], metadata: MetaData) -> OutboxParts[S]:
        """The outbox writer and its relay (started, stopped on stop) on `metadata`'s table."""
        table = metadata.tables[DEFAULT_TABLE_NAME]
        relay = OutboxRelay(
            sql.engine, table, self.redis, self.settings.bus, registry=self.metrics_registry
        )
        await relay.start()
        self._parts.push(relay.aclose, "outbox relay")
        return OutboxParts(
            **_fields_of(sql),
            outbox=Outbox(table, producer=self.spec.name),
            relay=relay,
        )

    async def _wait_for_redis(self, budget: float) -> None:
        """Ping until Redis answers, for at most `budget` seconds, then give up.

        A service started while Redis restarts (or before it, in a container
        platform that starts everything at once) waits instead of exiting at once
        and being restarted with the supervisor's growing back-off. Past the
        budget the error propagates: the process exits and says why.
        """
        deadline = time.monotonic() + budget
        backoff = EqualJitterBackoff(cap=2.0, base=0.05)
        attempt = 0
        while True:
            try:
                await self.redis.ping()
            except (RedisError, OSError) as e:
                attempt += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    log.error("Redis did not answer within %.1fs; giving up", budget, extra=_why(e))
                    raise
                if attempt == 1:
                    log.warning(
                        "waiting up to %.1fs for Redis before starting", budget, extra=_why(e)
                    )
                await asyncio.sleep(min(backoff.compute(attempt), left))
                continue
            if attempt:
                log.info("Redis answered after %d attempts; starting", attempt)
            return

    async def _jwks_url(self) -> str:
        """The configured JWKS URL, else the one of a ready users instance (registry)."""
        configured = self.settings.jwks_url
        if not configured:
            # Asked rarely (the JWKS cache refreshes every few minutes at most), so a
            # one-off refresh, not a watcher polling Redis for the process's life.
            await self._users.refresh()
        return users_jwks_url(self._users, configured)

    @staticmethod
    async def _create_schema(engine: AsyncEngine, metadata: MetaData) -> None:
        """create_all, serialised between instances starting together on one database.

        Without it two instances race between "does the table exist" and CREATE
        TABLE, and the loser dies at start-up ("table already exists").
        """
        dialect = engine.dialect.name
        if dialect == "postgresql":
            async with engine.begin() as conn:
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK}
                )
                await conn.run_sync(metadata.create_all)
            return
        database = engine.url.database or ""
        lock_fd = None
        if dialect == "sqlite" and database and database != ":memory:":
            lock_fd = os.open(f"{database}.schema-lock", os.O_RDWR | os.O_CREAT, 0o600)
            await asyncio.to_thread(fcntl.flock, lock_fd, fcntl.LOCK_EX)
        try:
            async with engine.begin() as conn:
                if dialect == "sqlite":
                    await conn.execute(text("PRAGMA journal_mode=WAL"))
                await conn.run_sync(metadata.create_all)
        finally:
            if lock_fd is not None:
                os.close(lock_fd)  # closing the descriptor releases the flock

    async def aclose(self) -> None:
        """Close in reverse order of opening: deregister first, the Redis client last."""
        await self._parts.aclose()

    async def checks(self) -> dict[str, str]:
        """Readiness checks by name: "ok" or why not."""
        results: dict[str, str] = {}
        try:
            await asyncio.wait_for(self.redis.ping(), timeout=1.0)
            results["redis"] = "ok"
        except Exception as e:
            results["redis"] = f"unreachable: {type(e).__name__}"
        if self.engine is not None:
            try:
                async with self.engine.connect() as conn:
                    await asyncio.wait_for(conn.execute(text("SELECT 1")), timeout=1.0)
                results["database"] = "ok"
            except Exception as e:
                results["database"] = f"unreachable: {type(e).__name__}"
        for consumer in self.consumers:
            waiting = consumer.waiting_for_redis
            if not consumer.running:
                results[f"consumer:{consumer.group}"] = f"stopped: {consumer.last_error}"
            elif waiting is not None:
                # Its loops back off and resume by themselves; not ready meanwhile. The
                # error type only, like the redis check: the message names Redis's address.
                results[f"consumer:{consumer.group}"] = (
                    f"waiting for Redis: {waiting.partition(':')[0]}"
                )
            else:
                results[f"consumer:{consumer.group}"] = "ok"
        return results


def _why(error: BaseException) -> dict[str, str]:
    return {"error": f"{type(error).__name__}: {error}"[:500]}


def new_outbox_table(metadata: MetaData) -> None:
    """Add the outbox table to a service's metadata (call once at import)."""
    outbox_table(metadata)


def _fields_of(parts: Parts[Any]) -> dict[str, Any]:
    """A parts object's fields, to build the wider parts type that extends it."""
    return {f.name: getattr(parts, f.name) for f in fields(parts)}
