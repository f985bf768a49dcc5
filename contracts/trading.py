from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from backbone.bus.streams import EventType
from contracts._base import EventData


class TradeExecutedData(EventData):
    """Money and quantities travel as decimal strings, never floats."""

    order_id: str
    user_id: str
    username: str
    symbol: str
    side: Literal["buy", "sell"]
    quantity: Decimal
    price: Decimal
    notional: Decimal
    realized_pnl: Decimal  # 0 for buys; (price - average cost) * quantity for sells
    trade_number: int  # the user's n-th trade, counted by the trading service
    executed_at: datetime


class PositionUpdatedData(EventData):
    user_id: str
    symbol: str
    quantity: Decimal
    average_price: Decimal
    cash: Decimal


TradeExecuted = EventType(
    "trading", "trade_executed", 1, TradeExecutedData, "A market order was filled."
)
PositionUpdated = EventType(
    "trading", "position_updated", 1, PositionUpdatedData, "A position changed after a fill."
)
