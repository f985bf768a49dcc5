"""Domain errors of the trading core; the API layer maps each to one problem type."""

from __future__ import annotations

from decimal import Decimal


class TradingError(Exception):
    """Root of what an order or a lookup can fail with, short of a bug."""


class InsufficientFunds(TradingError):
    def __init__(self, required: Decimal, available: Decimal) -> None:
        super().__init__(f"the order costs {required} but only {available} cash is available")
        self.required = required
        self.available = available


class InsufficientPosition(TradingError):
    """Selling more than is held: short positions are not allowed."""

    def __init__(self, symbol: str, requested: Decimal, held: Decimal) -> None:
        super().__init__(f"cannot sell {requested} {symbol}: {held} held (no short selling)")
        self.symbol = symbol
        self.requested = requested
        self.held = held


class IdempotencyKeyReused(TradingError):
    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was already used for a different order")


class OrderNotFound(TradingError):
    def __init__(self) -> None:
        super().__init__("no such order")
