"""Exact decimal columns on every backend.

PostgreSQL's NUMERIC is exact. SQLite has no decimal type: SQLAlchemy's Numeric
is stored as REAL there, so `cash - 0.1` drifts and `cash >= :x` can misjudge
equality. On SQLite a `Fixed` column stores the value as an integer count of
10**-scale units instead (cents for scale 2), which keeps arithmetic and
comparisons in SQL exact, including the conditional
`UPDATE ... SET cash = cash - :x WHERE cash >= :x` that guards against overspending.
Only addition, subtraction and comparison with other values of the same column
type are meaningful in SQL; multiply in Python.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Dialect, Numeric, TypeDecorator
from sqlalchemy.types import TypeEngine


class ScaledInteger(TypeDecorator[Decimal]):
    impl = BigInteger
    cache_ok = True

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self._unit = Decimal(1).scaleb(-scale)

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        exact = Decimal(value)
        if exact.quantize(self._unit) != exact:
            raise ValueError(f"{exact} has more than {self.scale} decimal places")
        return int(exact.scaleb(self.scale))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(int(value)).scaleb(-self.scale).quantize(self._unit)

    def coerce_compared_value(self, op: Any, value: Any) -> TypeEngine[Any]:
        return self  # a literal compared with or added to the column gets scaled too


def Fixed(precision: int, scale: int) -> TypeEngine[Decimal]:
    """NUMERIC(precision, scale); a scaled integer on SQLite."""
    return Numeric(precision, scale, asdecimal=True).with_variant(ScaledInteger(scale), "sqlite")
