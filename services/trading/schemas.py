"""Request and response bodies of the trading API.

The public ones are declared once in contracts/api/trading.py (the gateway documents
the same models; its docstring says what they accept and how decimals are written).
Only `OrderCreate` is the service's own: the contract's, with the symbol checked
against this service's market (`services.trading.market.SYMBOLS`), which the
contract cannot import. It documents the same schema.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from contracts.api import trading as contract
from contracts.api.trading import (
    MAX_QUANTITY,
    DecimalStr,
    MarketPublic,
    OrderPublic,
    PortfolioPublic,
    PositionPublic,
    Quantity,
    Side,
    SymbolShape,
    plain_decimal,
)
from services.trading.market import SYMBOLS


def _known_symbol(symbol: str) -> str:
    if symbol not in SYMBOLS:
        raise ValueError(f"unknown symbol; one of {', '.join(sorted(SYMBOLS))}")
    return symbol


Symbol = Annotated[SymbolShape, AfterValidator(_known_symbol)]


class OrderCreate(contract.OrderCreate):
    symbol: Symbol


__all__ = [
    "MAX_QUANTITY",
    "DecimalStr",
    "MarketPublic",
    "OrderCreate",
    "OrderPublic",
    "PortfolioPublic",
    "PositionPublic",
    "Quantity",
    "Side",
    "Symbol",
    "plain_decimal",
]
