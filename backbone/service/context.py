"""A service's typed context: built once from the parts it declares, handed to routes by one alias.

    async def build(parts: OutboxParts[Settings]) -> TradingContext:   # nothing in parts is None
        return TradingContext(Ledger(parts.sessions, parts.outbox, parts.relay, ...))

    SPEC = ServiceSpec(name="trading", context=ContextSpec.with_outbox(metadata, build), ...)
    Trading = Annotated[TradingContext, Depends(context_dependency(TradingContext))]  # deps.py

    Runtime opens:  Parts ─▶ SqlParts (tables created) ─▶ OutboxParts (relay started) ─▶ build
    the context:    routes (the alias) · consumers(ctx) · on_start(ctx) / on_stop(ctx)

The constructor a spec uses (`plain`, `with_database`, `with_outbox`) is the only
place the parts are declared, and it decides which parts type `build` is typed to
receive: `parts.sessions` exists for the type checker exactly where a database
was declared, and is never optional.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol

import redis.asyncio as aioredis
from fastapi import Request
from prometheus_client import CollectorRegistry
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

# PEP 696 defaults (in `typing` from 3.13 only): a bare `ServiceSpec` or `Runtime` means
# "any service", so code that runs whichever spec it is given (the process entry point)
# can name the type without parameters; every service's own spec is fully parametrised.
from typing_extensions import TypeVar

from backbone.auth import JwtVerifier
from backbone.bus.publisher import Publisher
from backbone.outbox import Outbox, OutboxRelay
from backbone.service.config import ServiceSettings

S = TypeVar("S", bound=ServiceSettings, default=Any)  # the service's settings class
C = TypeVar("C", default=Any)  # the service's context


@dataclass(frozen=True)
class Parts(Generic[S]):
    """What every service has, open before `build` runs and closed after `on_stop`."""

    settings: S
    redis: aioredis.Redis
    publisher: Publisher
    metrics_registry: CollectorRegistry
    # Checks tokens against the users service's JWKS; the auth dependency uses it unless
    # the spec's `verifier` gives another one (users: its own key).
    verifier: JwtVerifier


@dataclass(frozen=True)
class SqlParts(Parts[S]):
    """`ContextSpec.with_database`: the service's tables exist before `build` runs."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class OutboxParts(SqlParts[S]):
    """`ContextSpec.with_outbox`: add events in the transaction, `relay.notify()` after it."""

    outbox: Outbox
    relay: OutboxRelay  # started


class PartsOpener(Protocol[S]):
    """What the runtime opens on a context's behalf; it closes each part on stop."""

    @property
    def parts(self) -> Parts[S]: ...

    async def open_database(self, metadata: MetaData) -> SqlParts[S]: ...

    async def open_outbox(self, sql: SqlParts[S], metadata: MetaData) -> OutboxParts[S]: ...


@dataclass(frozen=True)
class ContextSpec(Generic[S, C]):
    """How a service's context is made: the parts it is built from, and its `build` step.

    Made with one of the constructors, which type `build`'s parts; `build` is async
    (a sync one would need an overload per constructor: mypy infers nothing from
    `C | Awaitable[C]` for a coroutine function).
    """

    open: Callable[[PartsOpener[S]], Awaitable[C]]

    @staticmethod
    def plain(build: Callable[[Parts[S]], Awaitable[C]]) -> ContextSpec[S, C]:
        """No database: the state is in Redis, or there is none."""

        async def open_(opener: PartsOpener[S]) -> C:
            return await build(opener.parts)

        return ContextSpec(open_)

    @staticmethod
    def with_database(
        metadata: MetaData, build: Callable[[SqlParts[S]], Awaitable[C]]
    ) -> ContextSpec[S, C]:
        """The service's own tables, created at start (serialised between instances)."""

        async def open_(opener: PartsOpener[S]) -> C:
            return await build(await opener.open_database(metadata))

        return ContextSpec(open_)

    @staticmethod
    def with_outbox(
        metadata: MetaData, build: Callable[[OutboxParts[S]], Awaitable[C]]
    ) -> ContextSpec[S, C]:
        """Tables plus the transactional outbox (`outbox_table(metadata)`) and its relay."""

        async def open_(opener: PartsOpener[S]) -> C:
            sql = await opener.open_database(metadata)
            return await build(await opener.open_outbox(sql, metadata))

        return ContextSpec(open_)


async def _no_context(parts: Parts[Any]) -> None:
    return None


# A spec that declares no context (routes that need nothing) gets None.
NO_CONTEXT: ContextSpec[Any, Any] = ContextSpec.plain(_no_context)


def context_dependency(kind: type[C]) -> Callable[[Request], Awaitable[C]]:
    """The dependency that hands a route its running service's context; one alias per service.

    Users = Annotated[UsersContext, Depends(context_dependency(UsersContext))]
    """

    # async: a sync dependency would cost every request a hop through the thread pool.
    async def context(request: Request) -> C:
        found = request.app.state.runtime.context
        if not isinstance(found, kind):
            # A router included in another service's app: say so, not an AttributeError later.
            raise TypeError(f"this app's context is a {type(found).__name__}, not {kind.__name__}")
        return found

    return context
