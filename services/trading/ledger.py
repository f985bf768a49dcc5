"""The ledger: market orders filled against cash and positions, one transaction per fill.

    fill = await ledger.place(trader, "AAPL", "buy", Decimal("3"), idempotency_key="k-1")

One fill = one SQL transaction: the account's cash and trade count, the position,
the order row and the two outbox events commit together or not at all; the relay
is woken after the commit. The fill is synchronous code run whole by a unit of work
(services/trading/unit_of_work.py: a writer thread on SQLite, `run_sync` on
PostgreSQL), one thread hop per order instead of one per statement. With the outbox
switched off (`ASTRA_OUTBOX__ENABLED=false`, a chaos drill only) the events are
published after the commit instead, in the request path
(`services/trading/dualwrite.py`), and lost if Redis refuses them.

Orders of one user never interleave, so they cannot overspend:
  - a per-user asyncio lock inside this process (on every backend: it also keeps
    a burst of one user's orders from holding one pool connection each);
  - PostgreSQL: `SELECT ... FOR UPDATE` on the account row, across instances;
  - SQLite: the transaction's first statement is a write, which takes the
    database's write lock before anything is read;
  - and, whatever the backend, cash and quantities only change through
    conditional UPDATEs (`WHERE cash >= :cost`), backed by CHECK constraints.

Idempotency: a filled order remembers its `Idempotency-Key` (unique per user)
and a fingerprint of the request. A retry with the key returns the stored fill,
executed once; the key with a different order is refused. Rejected orders are
not remembered, so retrying one re-evaluates it.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backbone.bus.streams import EventType
from backbone.ids import uuid7
from backbone.outbox import Outbox, OutboxRelay
from contracts.api.trading import Side
from contracts.trading import (
    PositionUpdated,
    PositionUpdatedData,
    TradeExecuted,
    TradeExecutedData,
)
from services.trading import store
from services.trading.dualwrite import DirectPublish
from services.trading.errors import (
    IdempotencyKeyReused,
    InsufficientFunds,
    InsufficientPosition,
    OrderNotFound,
)
from services.trading.market import Market
from services.trading.models import Order
from services.trading.unit_of_work import UnitOfWork

QUANTITY_UNIT = Decimal("0.0001")
MONEY_UNIT = Decimal("0.000001")  # cash, notional, average price, P&L
ZERO = Decimal("0")


@dataclass(frozen=True, slots=True)
class Trader:
    """The caller, as the verified token names them."""

    user_id: str
    username: str


@dataclass(frozen=True, slots=True)
class Fill:
    order: Order
    replayed: bool  # True: an earlier request with the same Idempotency-Key filled it
    # Outbox off only: the events to publish once the fill has committed.
    events: tuple[tuple[EventType[Any], BaseModel], ...] = ()


@dataclass(frozen=True, slots=True)
class _Change:
    """What one fill did to the account and the position."""

    balance: store.Balance  # cash and trade count after the fill
    notional: Decimal
    quantity: Decimal  # the position after the fill (0: closed)
    average_price: Decimal
    realized_pnl: Decimal


@dataclass(frozen=True, slots=True)
class Holding:
    symbol: str
    quantity: Decimal
    average_price: Decimal
    price: Decimal
    market_value: Decimal
    unrealized_pnl: Decimal


@dataclass(frozen=True, slots=True)
class Portfolio:
    cash: Decimal
    positions: list[Holding]
    equity: Decimal


class Ledger:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        relay: OutboxRelay,
        market: Market,
        *,
        starting_cash: Decimal,
        row_locks: bool,
        unit_of_work: UnitOfWork,
        direct: DirectPublish | None = None,
    ) -> None:
        self._sessions = sessions  # the reads
        self._unit = unit_of_work  # the fills: one synchronous transaction each
        self._outbox = outbox
        self._relay = relay
        # None: events go through the outbox (the default). Set: the outbox is off
        # (OutboxSettings.enabled), and events are published after the commit.
        self._direct = direct
        self.market = market
        self.starting_cash = starting_cash
        self._row_locks = row_locks  # PostgreSQL: SELECT ... FOR UPDATE
        # Entries vanish once no order of that user is running or waiting.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def aclose(self) -> None:
        """The unit of work's thread and connections (the engine is the runtime's)."""
        await self._unit.aclose()

    @asynccontextmanager
    async def _serialized(self, user_id: str) -> AsyncIterator[None]:
        lock = self._locks.get(user_id)
        if lock is None:
            lock = self._locks[user_id] = asyncio.Lock()
        async with lock:
            yield

    async def place(
        self,
        trader: Trader,
        symbol: str,
        side: Side,
        quantity: Decimal,
        idempotency_key: str | None = None,
    ) -> Fill:
        quantity = quantity.quantize(QUANTITY_UNIT)
        fingerprint = _fingerprint(symbol, side, quantity)
        async with self._serialized(trader.user_id):
            fill = await self._unit.run(
                lambda conn: self._fill(
                    conn, trader, symbol, side, quantity, idempotency_key, fingerprint
                )
            )
            if self._direct is not None and fill.events:
                # Committed already; inside the user's lock so their events keep the
                # order of their trades. A refusal is logged and counted, not raised.
                await self._direct.publish_committed(fill.order.id, fill.events)
        if not fill.replayed and self._direct is None:
            self._relay.notify()
        return fill

    def _fill(
        self,
        conn: Connection,
        trader: Trader,
        symbol: str,
        side: Side,
        quantity: Decimal,
        key: str | None,
        fingerprint: str,
    ) -> Fill:
        """One fill, inside the unit of work's transaction (committed after it returns)."""
        user_id = trader.user_id
        now = datetime.now(UTC)
        # First statement a write: on SQLite it takes the write lock right here.
        store.ensure_account(conn, user_id, trader.username, self.starting_cash, now)
        if self._row_locks:
            store.lock_account(conn, user_id)
        if key is not None:
            earlier = store.order_by_key(conn, user_id, key)
            if earlier is not None:
                if earlier.request_hash != fingerprint:
                    raise IdempotencyKeyReused()
                return Fill(earlier, replayed=True)

        price = self.market.quote(symbol)
        apply = self._buy if side == "buy" else self._sell
        change = apply(conn, user_id, symbol, quantity, price, now)
        order = Order(
            id=uuid7(),
            user_id=user_id,
            trade_number=change.balance.trade_count,
            symbol=symbol,
            side=side,
            quantity=quantity,
            price=price,
            notional=change.notional,
            realized_pnl=change.realized_pnl,
            status="filled",
            idempotency_key=key,
            request_hash=fingerprint if key is not None else None,
            executed_at=now,
        )
        store.insert_order(conn, order)
        events = _events(trader, order, change)
        if self._direct is not None:
            return Fill(order, replayed=False, events=events)  # published after commit
        for event_type, data in events:
            self._outbox.add_sync(conn, event_type, data)
        return Fill(order, replayed=False)

    def _buy(
        self,
        conn: Connection,
        user_id: str,
        symbol: str,
        quantity: Decimal,
        price: Decimal,
        now: datetime,
    ) -> _Change:
        notional = price * quantity  # 2 places x 4 places: exact in 6
        held = store.position(conn, user_id, symbol)
        balance = store.debit(conn, user_id, notional, now)
        if balance is None:
            raise InsufficientFunds(notional, store.cash(conn, user_id) or ZERO)
        held_qty, held_avg = held if held is not None else (ZERO, ZERO)
        new_qty = held_qty + quantity
        new_avg = ((held_qty * held_avg + notional) / new_qty).quantize(MONEY_UNIT, ROUND_HALF_EVEN)
        store.put_position(conn, user_id, symbol, new_qty, new_avg, now, exists=held is not None)
        return _Change(balance, notional, new_qty, new_avg, ZERO.quantize(MONEY_UNIT))

    def _sell(
        self,
        conn: Connection,
        user_id: str,
        symbol: str,
        quantity: Decimal,
        price: Decimal,
        now: datetime,
    ) -> _Change:
        notional = price * quantity
        reduced = store.reduce_position(conn, user_id, symbol, quantity, now)
        if reduced is None:
            held = store.position(conn, user_id, symbol)
            raise InsufficientPosition(symbol, quantity, held.quantity if held else ZERO)
        left, average = reduced
        realized = ((price - average) * quantity).quantize(MONEY_UNIT, ROUND_HALF_EVEN)
        if left == 0:
            store.delete_position(conn, user_id, symbol)
            average = ZERO.quantize(MONEY_UNIT)
        balance = store.credit(conn, user_id, notional, now)
        return _Change(balance, notional, left, average, realized)

    async def order(self, user_id: str, order_id: str) -> Order:
        async with self._sessions() as session:
            found = await store.order_by_id(session, user_id, order_id)
        if found is None:
            raise OrderNotFound()
        return found

    async def orders(self, user_id: str, limit: int, before: str | None = None) -> list[Order]:
        """`before`: an order id of the user's (OrderNotFound otherwise): the page after it."""
        async with self._sessions() as session:
            cursor = None
            if before is not None:
                cursor = await store.order_by_id(session, user_id, before)
                if cursor is None:
                    raise OrderNotFound()
            return await store.recent_orders(session, user_id, limit, cursor)

    async def portfolio(self, user_id: str) -> Portfolio:
        async with self._sessions() as session:
            cash, rows = await store.holdings(session, user_id)
        if cash is None:  # no order yet: the account exists only in principle
            cash = self.starting_cash
        quotes = self.market.quotes()
        holdings = []
        for row in rows:
            price = quotes[row.symbol]
            holdings.append(
                Holding(
                    symbol=row.symbol,
                    quantity=row.quantity,
                    average_price=row.average_price,
                    price=price,
                    market_value=row.quantity * price,
                    unrealized_pnl=((price - row.average_price) * row.quantity).quantize(
                        MONEY_UNIT, ROUND_HALF_EVEN
                    ),
                )
            )
        equity = cash + sum((h.market_value for h in holdings), ZERO)
        return Portfolio(cash=cash, positions=holdings, equity=equity)


def _events(
    trader: Trader, order: Order, change: _Change
) -> tuple[tuple[EventType[Any], BaseModel], ...]:
    """The two events a fill publishes: the trade, then the position it left."""
    return (
        (
            TradeExecuted,
            TradeExecutedData(
                order_id=order.id,
                user_id=trader.user_id,
                username=trader.username,
                symbol=order.symbol,
                side=order.side,
                quantity=order.quantity,
                price=order.price,
                notional=order.notional,
                realized_pnl=order.realized_pnl,
                trade_number=order.trade_number,
                executed_at=order.executed_at,
            ),
        ),
        (
            PositionUpdated,
            PositionUpdatedData(
                user_id=trader.user_id,
                symbol=order.symbol,
                quantity=change.quantity,
                average_price=change.average_price,
                cash=change.balance.cash,
            ),
        ),
    )


def _fingerprint(symbol: str, side: str, quantity: Decimal) -> str:
    return hashlib.sha256(f"{symbol}|{side}|{quantity}".encode()).hexdigest()
