"""What a trading route needs, as `Annotated` dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backbone.service import ProblemError
from backbone.service.auth import CurrentUser
from services.trading.ledger import Ledger, Trader


def ledger(request: Request) -> Ledger:
    found: Ledger = request.app.state.runtime.state["ledger"]
    return found


async def trader(user: CurrentUser) -> Trader:
    """The verified token's subject; never a forwarded header."""
    if not 0 < len(user.subject) <= 128 or len(user.username) > 64:
        raise ProblemError(
            401,
            "Unauthorized",
            "The token's subject or username is not acceptable.",
            headers={"WWW-Authenticate": 'Bearer realm="astratrade"'},
        )
    return Trader(user.subject, user.username)


LedgerDep = Annotated[Ledger, Depends(ledger)]
TraderDep = Annotated[Trader, Depends(trader)]
