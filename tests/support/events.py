"""Event types used by kernel tests (and their child processes)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from pydantic import BaseModel

from backbone.bus.streams import EventType
from contracts.trading import TradeExecutedData


class Ping(BaseModel):
    n: int


class Pong(BaseModel):
    n: int


Pinged = EventType("test", "pinged", 1, Ping)
Ponged = EventType("test", "ponged", 1, Pong)


def trade_data(n: int, username: str) -> TradeExecutedData:
    """The n-th trade of `username` (user id `u-<username>`): one BTC-USD at 100."""
    return TradeExecutedData(
        order_id=f"o-{n}",
        user_id=f"u-{username}",
        username=username,
        symbol="BTC-USD",
        side="buy",
        quantity=Decimal("1"),
        price=Decimal("100"),
        notional=Decimal("100"),
        realized_pnl=Decimal("0"),
        trade_number=n,
        executed_at=datetime(2025, 1, 1, tzinfo=UTC),
    )
