"""Statements on the trading tables, run in the caller's session and transaction.

The writes that guard money are conditional single statements (`... WHERE cash
>= :x RETURNING ...`), so they hold even without the row lock the ledger takes.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
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


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def ensure_account(
    session: AsyncSession, user_id: str, username: str, cash: Decimal, now: datetime
) -> None:
    """Create the account on first use; a no-op (but still a write) when it exists."""
    values = dict(
        user_id=user_id, username=username, cash=cash, trade_count=0, created_at=now, updated_at=now
    )
    if _dialect(session) == "postgresql":
        stmt: Any = postgresql.insert(accounts).values(**values).on_conflict_do_nothing()
    else:
        stmt = sqlite.insert(accounts).values(**values).on_conflict_do_nothing()
    await session.execute(stmt)


async def lock_account(session: AsyncSession, user_id: str) -> None:
    """SELECT ... FOR UPDATE: the user's orders run one at a time, across instances."""
    await session.execute(
        select(accounts.c.user_id).where(accounts.c.user_id == user_id).with_for_update()
    )


async def cash(session: AsyncSession, user_id: str) -> Decimal | None:
    value = await session.scalar(select(accounts.c.cash).where(accounts.c.user_id == user_id))
    return None if value is None else Decimal(value)


async def debit(
    session: AsyncSession, user_id: str, amount: Decimal, now: datetime
) -> Balance | None:
    """Take `amount` and count a trade, only if the cash covers it: (cash, trade_count) or None."""
    row = (
        await session.execute(
            update(accounts)
            .where(accounts.c.user_id == user_id, accounts.c.cash >= amount)
            .values(
                cash=accounts.c.cash - amount,
                trade_count=accounts.c.trade_count + 1,
                updated_at=now,
            )
            .returning(accounts.c.cash, accounts.c.trade_count)
        )
    ).first()
    return None if row is None else Balance(*row)


async def credit(session: AsyncSession, user_id: str, amount: Decimal, now: datetime) -> Balance:
    return Balance(
        *(
            await session.execute(
                update(accounts)
                .where(accounts.c.user_id == user_id)
                .values(
                    cash=accounts.c.cash + amount,
                    trade_count=accounts.c.trade_count + 1,
                    updated_at=now,
                )
                .returning(accounts.c.cash, accounts.c.trade_count)
            )
        ).one()
    )


async def position(session: AsyncSession, user_id: str, symbol: str) -> Lot | None:
    row = (
        await session.execute(
            select(positions.c.quantity, positions.c.average_price).where(
                positions.c.user_id == user_id, positions.c.symbol == symbol
            )
        )
    ).first()
    return None if row is None else Lot(*row)


async def put_position(
    session: AsyncSession,
    user_id: str,
    symbol: str,
    quantity: Decimal,
    average_price: Decimal,
    now: datetime,
    *,
    exists: bool,
) -> None:
    if exists:
        await session.execute(
            update(positions)
            .where(positions.c.user_id == user_id, positions.c.symbol == symbol)
            .values(quantity=quantity, average_price=average_price, updated_at=now)
        )
    else:
        await session.execute(
            insert(positions).values(
                user_id=user_id,
                symbol=symbol,
                quantity=quantity,
                average_price=average_price,
                updated_at=now,
            )
        )


async def reduce_position(
    session: AsyncSession, user_id: str, symbol: str, quantity: Decimal, now: datetime
) -> Lot | None:
    """Take `quantity` off a position, only if that much is held: (quantity, average) or None."""
    row = (
        await session.execute(
            update(positions)
            .where(
                positions.c.user_id == user_id,
                positions.c.symbol == symbol,
                positions.c.quantity >= quantity,
            )
            .values(quantity=positions.c.quantity - quantity, updated_at=now)
            .returning(positions.c.quantity, positions.c.average_price)
        )
    ).first()
    return None if row is None else Lot(*row)


async def delete_position(session: AsyncSession, user_id: str, symbol: str) -> None:
    await session.execute(
        delete(positions).where(positions.c.user_id == user_id, positions.c.symbol == symbol)
    )


async def insert_order(session: AsyncSession, order: Order) -> None:
    await session.execute(insert(orders).values(**asdict(order)))


async def order_by_key(session: AsyncSession, user_id: str, key: str) -> Order | None:
    row = (
        await session.execute(
            select(orders).where(orders.c.user_id == user_id, orders.c.idempotency_key == key)
        )
    ).first()
    return None if row is None else Order(**row._mapping)


async def order_by_id(session: AsyncSession, user_id: str, order_id: str) -> Order | None:
    row = (
        await session.execute(
            select(orders).where(orders.c.id == order_id, orders.c.user_id == user_id)
        )
    ).first()
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
