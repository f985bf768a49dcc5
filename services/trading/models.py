"""The trading tables; the outbox shares their MetaData, so fills and events commit together.

Money and quantities are `Fixed` (exact NUMERIC; scaled integers on SQLite):
  price          2 places (the market quotes cents)
  quantity       4 places
  cash, notional 6 places: price x quantity is exact, so cash is never rounded
  average_price  6 places (a weighted average, rounded half-even)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

from backbone.outbox import UTCDateTime, outbox_table
from services.trading.columns import Fixed

metadata = MetaData()

accounts = Table(
    "trading_accounts",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("username", String(64), nullable=False),
    Column("cash", Fixed(24, 6), nullable=False),
    Column("trade_count", Integer, nullable=False),  # numbers the user's fills 1, 2, 3...
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("cash >= 0", name="ck_trading_accounts_cash_not_negative"),
)

positions = Table(
    "trading_positions",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("symbol", String(16), primary_key=True),
    Column("quantity", Fixed(20, 4), nullable=False),  # a closed position is deleted
    Column("average_price", Fixed(20, 6), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("quantity >= 0", name="ck_trading_positions_quantity_not_negative"),
)

orders = Table(
    "trading_orders",
    metadata,
    Column("id", String(36), primary_key=True),  # UUIDv7
    Column("user_id", String(128), nullable=False),
    Column("trade_number", Integer, nullable=False),
    Column("symbol", String(16), nullable=False),
    Column("side", String(4), nullable=False),
    Column("quantity", Fixed(20, 4), nullable=False),
    Column("price", Fixed(20, 2), nullable=False),
    Column("notional", Fixed(24, 6), nullable=False),
    Column("realized_pnl", Fixed(24, 6), nullable=False),
    Column("status", String(16), nullable=False),
    Column("idempotency_key", String(128), nullable=True),
    Column("request_hash", String(64), nullable=True),  # what the key was first used for
    Column("executed_at", UTCDateTime, nullable=False),
    # Listing is "newest first" per user, which is trade_number order.
    UniqueConstraint("user_id", "trade_number", name="uq_trading_orders_user_trade"),
    UniqueConstraint("user_id", "idempotency_key", name="uq_trading_orders_user_key"),
    CheckConstraint("side IN ('buy', 'sell')", name="ck_trading_orders_side"),
)
Index("ix_trading_orders_user", orders.c.user_id)

outbox = outbox_table(metadata)


@dataclass(frozen=True, slots=True)
class Order:
    """One row of `trading_orders`: a filled market order."""

    id: str
    user_id: str
    trade_number: int
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    notional: Decimal
    realized_pnl: Decimal
    status: str
    idempotency_key: str | None
    request_hash: str | None
    executed_at: datetime
