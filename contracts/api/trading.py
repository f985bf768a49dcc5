"""Request and response bodies of the trading API.

Request models forbid unknown fields (`extra="forbid"`): a misspelt field is a
422, never silently ignored. Quantities accept a JSON number or a decimal string
("0.5"): positive, at most 4 decimal places, at most 1,000,000; NaN, Infinity,
overflowing exponents, zero and -0 are 422. Symbols and sides are exact and
case-sensitive ("AAPL", "buy").

Every decimal in a response is a string in plain notation, trailing zeros
trimmed to at least two places: "10000.00", "0.0001", "9429.9964".

`OrderCreate` here checks the symbol's shape only: the trading service's own
`OrderCreate` (services/trading/schemas.py) also refuses a symbol its market does
not list; both document the same schema.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

MAX_QUANTITY = Decimal("1000000")

Side = Literal["buy", "sell"]


def plain_decimal(value: Decimal) -> str:
    """10000.000000 -> "10000.00"; 0.000100 -> "0.0001"; never an exponent."""
    trimmed = value.normalize()
    exponent = trimmed.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        trimmed = trimmed.quantize(Decimal("0.01"))
    if trimmed == 0:
        trimmed = abs(trimmed)  # never "-0.00"
    return f"{trimmed:f}"


DecimalStr = Annotated[Decimal, PlainSerializer(plain_decimal, return_type=str)]
SymbolShape = Annotated[str, Field(min_length=1, max_length=16)]
Quantity = Annotated[
    Decimal, Field(gt=0, le=MAX_QUANTITY, max_digits=11, decimal_places=4, allow_inf_nan=False)
]


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: SymbolShape
    side: Side
    quantity: Quantity


class OrderPublic(BaseModel):
    order_id: str
    symbol: str
    side: Side
    quantity: DecimalStr
    price: DecimalStr
    notional: DecimalStr
    status: Literal["filled"]
    executed_at: datetime


class MarketPublic(BaseModel):
    symbol: str
    price: DecimalStr


class PositionPublic(BaseModel):
    symbol: str
    quantity: DecimalStr
    average_price: DecimalStr
    market_value: DecimalStr
    unrealized_pnl: DecimalStr


class PortfolioPublic(BaseModel):
    cash: DecimalStr
    positions: list[PositionPublic]
    equity: DecimalStr
