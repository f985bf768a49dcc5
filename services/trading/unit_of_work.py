"""Where a fill's transaction runs: one synchronous unit of work, one transaction.

    runner = unit_of_work_for(engine, sessions)
    order = await runner.run(lambda conn: fill(conn, ...))   # committed, or raised
    await runner.aclose()

Why not the async session statement by statement: measured (`make bench-orders`, the
ledger leg), a fill through the async SQLite driver cost about 8 ms of CPU. aiosqlite
hands every statement to its own thread and back (about 0.3 ms of CPU a hop, ten
statements a fill), and the ORM session adds its own layer per statement. The same
statements on the stdlib driver in one thread hop cost about 1.3 ms.

- SQLite: every fill runs on one writer thread of this process, through the stdlib
  `sqlite3` driver. One thread also means the process's fills never wait in SQLite's
  busy handler for each other (it sleeps in steps of up to 100 ms); only the outbox
  relay's marking of sent rows, on its own connection, can contend with them.
  Durability is unchanged: WAL with `synchronous=FULL` (SQLite's default), so a
  committed fill survives a power loss, not only a process crash.
- PostgreSQL: the same function inside `AsyncSession.run_sync`, over asyncpg: one
  code path for both, statements still awaited on the event loop.

The function runs with the caller's context variables (correlation id, trace), so the
outbox rows it writes carry them.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

T = TypeVar("T")


class UnitOfWork(Protocol):
    async def run(self, work: Callable[[Connection], T]) -> T: ...

    async def aclose(self) -> None: ...


class SqliteWriterThread:
    """Fills on one thread, through the stdlib driver, one transaction each."""

    def __init__(self, async_url: str) -> None:
        url = make_url(async_url).set(drivername="sqlite")  # pysqlite: the stdlib driver
        self._engine: Engine = create_engine(url)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")

    async def run(self, work: Callable[[Connection], T]) -> T:
        def transaction() -> T:
            with self._engine.begin() as conn:
                return work(conn)

        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, context.run, transaction)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        # Disposed on the thread that opened the connections (sqlite3 checks it).
        await loop.run_in_executor(self._thread, self._engine.dispose)
        self._thread.shutdown(wait=True)


class AsyncSessionUnit:
    """The same work inside `run_sync`: statements awaited on the loop (asyncpg)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def run(self, work: Callable[[Connection], T]) -> T:
        async with self._sessions() as session, session.begin():
            return await session.run_sync(lambda sync: work(sync.connection()))

    async def aclose(self) -> None:
        return None


def unit_of_work_for(engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> UnitOfWork:
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        return SqliteWriterThread(engine.url.render_as_string(hide_password=False))
    return AsyncSessionUnit(sessions)
