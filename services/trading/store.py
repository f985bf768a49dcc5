"""Statements on the trading tables, run in the caller's transaction.

The fill's statements are synchronous and take a `Connection`: a fill is one unit of
work that the ledger runs whole on a writer thread (SQLite) or inside `run_sync` over
asyncpg (PostgreSQL) — services/trading/unit_of_work.py. The reads stay async.

The writes that guard money are conditional single statements (`... WHERE cash
>= :x RETURNING ...`), so they hold even without the row lock the ledger takes.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from services.trading.models import Order, accounts, orders, positions


class Balance(NamedTuple):
    cash: Decimal
    trade_count: int


class Lot(NamedTuple):
    quantity: Decimal
    average_price: Decimal


class Holding(NamedTuple):
    symbol: str
    quantity: Decimal
    average_price: Decimal


# The order path's statements, built once. Building a Core statement per call (the
# `where(...)`, `values(...)` and their coercions, then its cache key) cost more CPU
# than running it: an order spent most of its time here (bench/README.md, bench-orders).
# Each is executed with a dict of its bind parameters.
_ACCOUNT = {
    "user_id": bindparam("p_user_id"),
    "username": bindparam("p_username"),
    "cash": bindparam("p_cash", type_=accounts.c.cash.type),
    "trade_count": 0,
    "created_at": bindparam("p_now", type_=accounts.c.created_at.type),
    "updated_at": bindparam("p_now", type_=accounts.c.updated_at.type),
}
_ENSURE_ACCOUNT = {
    "postgresql": postgresql.insert(accounts).values(**_ACCOUNT).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(accounts).values(**_ACCOUNT).on_conflict_do_nothing(),
}
_LOCK_ACCOUNT = (
    select(accounts.c.user_id).where(accounts.c.user_id == bindparam("p_user_id")).with_for_update()
)
_CASH = select(accounts.c.cash).where(accounts.c.user_id == bindparam("p_user_id"))
_AMOUNT = bindparam("p_amount", type_=accounts.c.cash.type)
_NOW_ACCOUNT = bindparam("p_now", type_=accounts.c.updated_at.type)
_DEBIT = (
    update(accounts)
    .where(accounts.c.user_id == bindparam("p_user_id"), accounts.c.cash >= _AMOUNT)
    .values(
        cash=accounts.c.cash - _AMOUNT,
        trade_count=accounts.c.trade_count + 1,
        updated_at=_NOW_ACCOUNT,
    )
    .returning(accounts.c.cash, accounts.c.trade_count)
)
_CREDIT = (
    update(accounts)
    .where(accounts.c.user_id == bindparam("p_user_id"))
    .values(
        cash=accounts.c.cash + _AMOUNT,
        trade_count=accounts.c.trade_count + 1,
        updated_at=_NOW_ACCOUNT,
    )
    .returning(accounts.c.cash, accounts.c.trade_count)
)
_THIS_POSITION = (
    positions.c.user_id == bindparam("p_user_id"),
    positions.c.symbol == bindparam("p_symbol"),
)
_POSITION = select(positions.c.quantity, positions.c.average_price).where(*_THIS_POSITION)
_QUANTITY = bindparam("p_quantity", type_=positions.c.quantity.type)
_NOW_POSITION = bindparam("p_now", type_=positions.c.updated_at.type)
_UPDATE_POSITION = (
    update(positions)
    .where(*_THIS_POSITION)
    .values(
        quantity=_QUANTITY,
        average_price=bindparam("p_average_price", type_=positions.c.average_price.type),
        updated_at=_NOW_POSITION,
    )
)
_INSERT_POSITION = insert(positions)
_REDUCE_POSITION = (
    update(positions)
    .where(*_THIS_POSITION, positions.c.quantity >= _QUANTITY)
    .values(quantity=positions.c.quantity - _QUANTITY, updated_at=_NOW_POSITION)
    .returning(positions.c.quantity, positions.c.average_price)
)
_DELETE_POSITION = delete(positions).where(*_THIS_POSITION)
_INSERT_ORDER = insert(orders)
_ORDER_BY_KEY = select(orders).where(
    orders.c.user_id == bindparam("p_user_id"), orders.c.idempotency_key == bindparam("p_key")
)
_ORDER_BY_ID = select(orders).where(
    orders.c.id == bindparam("p_order_id"), orders.c.user_id == bindparam("p_user_id")
)


def ensure_account(
    conn: Connection, user_id: str, username: str, cash: Decimal, now: datetime
) -> None:
    """Create the account on first use; a no-op (but still a write) when it exists."""
    params = {"p_user_id": user_id, "p_username": username, "p_cash": cash, "p_now": now}
    conn.execute(_ENSURE_ACCOUNT[conn.dialect.name], params)


def lock_account(conn: Connection, user_id: str) -> None:
    """SELECT ... FOR UPDATE: the user's orders run one at a time, across instances."""
    conn.execute(_LOCK_ACCOUNT, {"p_user_id": user_id})


def cash(conn: Connection, user_id: str) -> Decimal | None:
    value = conn.scalar(_CASH, {"p_user_id": user_id})
    return None if value is None else Decimal(value)


def debit(conn: Connection, user_id: str, amount: Decimal, now: datetime) -> Balance | None:
    """Take `amount` and count a trade, only if the cash covers it: (cash, trade_count) or None."""
    params = {"p_user_id": user_id, "p_amount": amount, "p_now": now}
    row = (conn.execute(_DEBIT, params)).first()
    return None if row is None else Balance(*row)


def credit(conn: Connection, user_id: str, amount: Decimal, now: datetime) -> Balance:
    params = {"p_user_id": user_id, "p_amount": amount, "p_now": now}
    return Balance(*(conn.execute(_CREDIT, params)).one())


def position(conn: Connection, user_id: str, symbol: str) -> Lot | None:
    row = (conn.execute(_POSITION, {"p_user_id": user_id, "p_symbol": symbol})).first()
    return None if row is None else Lot(*row)


def put_position(
    conn: Connection,
    user_id: str,
    symbol: str,
    quantity: Decimal,
    average_price: Decimal,
    now: datetime,
    *,
    exists: bool,
) -> None:
    if exists:
        params = {
            "p_user_id": user_id,
            "p_symbol": symbol,
            "p_quantity": quantity,
            "p_average_price": average_price,
            "p_now": now,
        }
        conn.execute(_UPDATE_POSITION, params)
    else:
        row = {
            "user_id": user_id,
            "symbol": symbol,
            "quantity": quantity,
            "average_price": average_price,
            "updated_at": now,
        }
        conn.execute(_INSERT_POSITION, row)


def reduce_position(
    conn: Connection, user_id: str, symbol: str, quantity: Decimal, now: datetime
) -> Lot | None:
    """Take `quantity` off a position, only if that much is held: (quantity, average) or None."""
    params = {"p_user_id": user_id, "p_symbol": symbol, "p_quantity": quantity, "p_now": now}
    row = (conn.execute(_REDUCE_POSITION, params)).first()
    return None if row is None else Lot(*row)


def delete_position(conn: Connection, user_id: str, symbol: str) -> None:
    conn.execute(_DELETE_POSITION, {"p_user_id": user_id, "p_symbol": symbol})


def insert_order(conn: Connection, order: Order) -> None:
    conn.execute(_INSERT_ORDER, asdict(order))


def order_by_key(conn: Connection, user_id: str, key: str) -> Order | None:
    row = (conn.execute(_ORDER_BY_KEY, {"p_user_id": user_id, "p_key": key})).first()
    return None if row is None else Order(**row._mapping)


async def order_by_id(session: AsyncSession, user_id: str, order_id: str) -> Order | None:
    params = {"p_user_id": user_id, "p_order_id": order_id}
    row = (await session.execute(_ORDER_BY_ID, params)).first()
    return None if row is None else Order(**row._mapping)


async def recent_orders(
    session: AsyncSession, user_id: str, limit: int, before: Order | None = None
) -> list[Order]:
    """Newest first; `before`: only the orders placed before that one (keyset paging
    on the user's own trade sequence, so a page never shifts as new orders land)."""
    query = select(orders).where(orders.c.user_id == user_id)
    if before is not None:
        query = query.where(orders.c.trade_number < before.trade_number)
    rows = await session.execute(query.order_by(orders.c.trade_number.desc()).limit(limit))
    return [Order(**row._mapping) for row in rows]


async def holdings(session: AsyncSession, user_id: str) -> tuple[Decimal | None, list[Holding]]:
    """Cash and positions from ONE statement, so both come from one snapshot.

    (None, []) when the account does not exist yet.
    """
    rows = (
        await session.execute(
            select(
                accounts.c.cash,
                positions.c.symbol,
                positions.c.quantity,
                positions.c.average_price,
            )
            .select_from(accounts.outerjoin(positions, positions.c.user_id == accounts.c.user_id))
            .where(accounts.c.user_id == user_id)
            .order_by(positions.c.symbol)
        )
    ).all()
    if not rows:
        return None, []
    held = [Holding(r.symbol, r.quantity, r.average_price) for r in rows if r.symbol is not None]
    return rows[0].cash, held
