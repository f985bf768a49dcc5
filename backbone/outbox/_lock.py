"""Mutual exclusion between relays of one outbox table, so batches never interleave.

PostgreSQL: `pg_try_advisory_xact_lock(key)` taken inside the batch transaction;
the commit (or a dropped connection) releases it. SQLite: an flock on a file
next to the database, because SQLite's own write lock would stall the service's
writes for the length of the Redis round trip. Any other backend: no lock, one
relay per table.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from typing import Protocol

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backbone.errors import OutboxError


def advisory_key(table: Table) -> int:
    """A stable signed 64-bit key per table: two services' outboxes never contend."""
    digest = hashlib.blake2b(f"astra_outbox:{table.fullname}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class RelayLock(Protocol):
    # True when the lock only lives as long as the batch transaction, which then
    # has to stay open across the Redis round trip.
    holds_transaction: bool

    async def try_acquire(self, conn: AsyncConnection) -> bool: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class AdvisoryLock:
    holds_transaction = True

    def __init__(self, key: int) -> None:
        self.key = key

    async def try_acquire(self, conn: AsyncConnection) -> bool:
        acquired = await conn.scalar(select(func.pg_try_advisory_xact_lock(self.key)))
        return bool(acquired)

    def release(self) -> None:
        """Nothing to do: the transaction's end releases the lock."""

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<AdvisoryLock key={self.key}>"


class FileLock:
    """flock(2) on a file: exclusive per open file, so it also separates two relays
    of one process, and the kernel drops it when a relay process dies."""

    holds_transaction = False

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    async def try_acquire(self, conn: AsyncConnection) -> bool:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as e:
                raise OutboxError(f"cannot open the relay lock file {self.path}: {e}") from e
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __repr__(self) -> str:
        return f"<FileLock {self.path}>"


class NoLock:
    holds_transaction = False

    async def try_acquire(self, conn: AsyncConnection) -> bool:
        return True

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "<NoLock>"


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The database file of an SQLite engine; None for in-memory databases."""
    database = engine.url.database or ""
    if database.startswith("file:"):  # URI filename (`?uri=true`)
        database = database[len("file:") :].split("?", 1)[0]
    if not database or database == ":memory:" or engine.url.query.get("mode") == "memory":
        return None
    return os.path.abspath(database)


def relay_lock_for(engine: AsyncEngine, table: Table) -> RelayLock:
    dialect = engine.dialect.name
    if dialect == "postgresql":
        return AdvisoryLock(advisory_key(table))
    if dialect == "sqlite":
        path = sqlite_file(engine)
        if path is not None:
            return FileLock(f"{path}-{table.fullname}.relay-lock")
    return NoLock()
