"""What a trading route needs: the service's context and the caller, as `Annotated` aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from backbone.auth import challenge
from backbone.service import ProblemError, context_dependency
from backbone.service.auth import CurrentUser
from services.trading.ledger import Ledger, Trader


@dataclass(frozen=True)
class TradingContext:
    """Built once at start (`services/trading/app.py`); routes take it as `Trading`."""

    ledger: Ledger


async def trader(user: CurrentUser) -> Trader:
    """The verified token's subject; never a forwarded header."""
    if not 0 < len(user.subject) <= 128 or len(user.username) > 64:
        raise ProblemError(
            401,
            "Unauthorized",
            "The token's subject or username is not acceptable.",
            headers={"WWW-Authenticate": challenge()},
        )
    return Trader(user.subject, user.username)


Trading = Annotated[TradingContext, Depends(context_dependency(TradingContext))]
TraderDep = Annotated[Trader, Depends(trader)]
