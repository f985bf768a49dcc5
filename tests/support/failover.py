"""What the Redis failover tests share (Sentinel and Cluster): orders placed through the
gateway while a primary dies and the verdict on them, and an outbox on SQLite with the
checks that it drained and its events were applied."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from sqlalchemy import MetaData, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from backbone.outbox import Outbox, outbox_table
from drills.accounting import count

ORDERS = "/api/v1/trading/orders"


class OrderStream:
    """Traders placing market orders through the gateway, ~5 a second each, recording
    (when, status) of every answer (status 0: none)."""

    def __init__(self, gateway: str, accounts: Sequence[Mapping[str, str]]) -> None:
        self.gateway = gateway
        self.accounts = accounts
        self.outcomes: list[tuple[float, int]] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._trade(a["token"])) for a in self.accounts]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _trade(self, token: str) -> None:
        async with httpx.AsyncClient(base_url=self.gateway, timeout=5.0) as http:
            n = 0
            while not self._stop.is_set():
                n += 1
                try:
                    response = await http.post(
                        ORDERS,
                        json={"symbol": "AAPL", "side": "buy", "quantity": "1"},
                        headers={
                            "Authorization": f"Bearer {token}",
                            "Idempotency-Key": f"{token[-12:]}-{n}",
                        },
                    )
                    self.outcomes.append((time.monotonic(), response.status_code))
                except httpx.HTTPError:
                    self.outcomes.append((time.monotonic(), 0))
                await asyncio.sleep(0.2)  # pacing, not a sync

    def served_again(self, after: float) -> tuple[int, float]:
        """Every order since `after` accepted; (orders failed, the span they covered)."""
        later = [status for at, status in self.outcomes if at > after]
        assert later, "no order was placed after the failover"
        assert all(status == 201 for status in later), later
        failed = [at for at, status in self.outcomes if status != 201]
        return len(failed), (max(failed) - min(failed)) if failed else 0.0

    async def assert_every_effect_once(self, redis_url: str, *, cluster: bool = False) -> None:
        """Once the outbox and consumers caught up: every accepted order has its trade
        event, its XP and its feed entry exactly once (the drills' accounting)."""
        deadline = time.monotonic() + 60
        while True:
            counted = await count(self.gateway, redis_url, self.accounts, cluster=cluster)
            if counted.exact and counted.trade_events == counted.orders_accepted:
                break
            assert time.monotonic() < deadline, counted.to_json()
            await asyncio.sleep(2)  # the outbox and the consumers catching up
        # A 201 the client never saw (a timeout) is still an order: at least those answered.
        assert counted.orders_accepted >= sum(1 for _, s in self.outcomes if s == 201)
        assert counted.lost == 0
        assert counted.duplicated == 0


async def sqlite_outbox(tmp_path: Path) -> tuple[AsyncEngine, Outbox]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'service.db'}")
    metadata = MetaData()
    table = outbox_table(metadata)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return engine, Outbox(table, producer="test")


async def drained(engine: AsyncEngine, outbox: Outbox) -> bool:
    t = outbox.table
    async with engine.connect() as conn:
        unsent = await conn.scalar(select(func.count()).where(t.c.sent_at.is_(None)))
    return not unsent


async def members_at_least(redis: aioredis.Redis, key: str, n: int) -> bool:
    """The set `key` has `n` members or more (False while Redis is failing over)."""
    try:
        return int(await redis.scard(key)) >= n
    except Exception:
        return False
