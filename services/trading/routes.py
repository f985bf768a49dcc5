"""The trading API: markets, orders and the caller's portfolio.

Domain errors become problems in one table (`PROBLEMS`), installed by the app.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from backbone.service import problem_response
from backbone.service.auth import OptionalUser
from services.trading.deps import TraderDep, Trading
from services.trading.errors import (
    IdempotencyKeyReused,
    InsufficientFunds,
    InsufficientPosition,
    OrderNotFound,
    TradingError,
)
from services.trading.models import Order
from services.trading.schemas import (
    MarketPublic,
    OrderCreate,
    OrderPublic,
    PortfolioPublic,
    PositionPublic,
    plain_decimal,
)

PREFIX = "/api/v1/trading"
_TYPES = "https://astratrade.dev/problems/"

# error -> (status, title, problem type)
PROBLEMS: dict[type[TradingError], tuple[int, str, str]] = {
    InsufficientFunds: (422, "Insufficient funds", _TYPES + "insufficient-funds"),
    InsufficientPosition: (422, "Insufficient position", _TYPES + "insufficient-position"),
    IdempotencyKeyReused: (422, "Idempotency key reused", _TYPES + "idempotency-key-reused"),
    OrderNotFound: (404, "Order not found", "about:blank"),
}


async def on_trading_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, TradingError):  # installed for TradingError only
        raise exc
    status, title, type_ = PROBLEMS[type(exc)]
    extensions: dict[str, Any] = {}
    if isinstance(exc, InsufficientFunds):
        extensions = {
            "required": plain_decimal(exc.required),
            "available": plain_decimal(exc.available),
        }
    elif isinstance(exc, InsufficientPosition):
        extensions = {"requested": plain_decimal(exc.requested), "held": plain_decimal(exc.held)}
    return problem_response(
        status, title, str(exc), type_=type_, instance=request.url.path, **extensions
    )


router = APIRouter(prefix=PREFIX, tags=["trading"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",  # visible ASCII
        description="Retrying with the same key returns the first fill instead of a new one.",
    ),
]


def _public(order: Order) -> OrderPublic:
    return OrderPublic(
        order_id=order.id,
        symbol=order.symbol,
        side=order.side,
        quantity=order.quantity,
        price=order.price,
        notional=order.notional,
        status="filled",
        executed_at=order.executed_at,
    )


@router.get("/markets", response_model=list[MarketPublic])
async def markets(ctx: Trading, user: OptionalUser) -> list[MarketPublic]:
    """Current prices of every tradable symbol."""
    return [MarketPublic(symbol=s, price=p) for s, p in ctx.ledger.market.quotes().items()]


@router.post("/orders", status_code=201, response_model=OrderPublic)
async def place_order(
    body: OrderCreate,
    trader: TraderDep,
    ctx: Trading,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OrderPublic:
    """Fill a market order at the current price."""
    fill = await ctx.ledger.place(trader, body.symbol, body.side, body.quantity, idempotency_key)
    response.headers["Location"] = f"{PREFIX}/orders/{fill.order.id}"
    if fill.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return _public(fill.order)


@router.get("/orders", response_model=list[OrderPublic])
async def list_orders(
    trader: TraderDep,
    ctx: Trading,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[
        uuid.UUID | None,
        Query(description="the last order_id of the previous page: the orders placed before it"),
    ] = None,
) -> list[OrderPublic]:
    """The caller's orders, newest first; page on with `before` (404: not one of yours)."""
    cursor = None if before is None else str(before)
    return [_public(o) for o in await ctx.ledger.orders(trader.user_id, limit, cursor)]


@router.get("/orders/{order_id}", response_model=OrderPublic)
async def get_order(
    order_id: Annotated[uuid.UUID, Path()], trader: TraderDep, ctx: Trading
) -> OrderPublic:
    """One of the caller's orders; anyone else's is 404, as if it did not exist."""
    return _public(await ctx.ledger.order(trader.user_id, str(order_id)))


@router.get("/portfolio", response_model=PortfolioPublic)
async def portfolio(trader: TraderDep, ctx: Trading) -> PortfolioPublic:
    """The caller's cash, positions valued at current prices, and equity."""
    book = await ctx.ledger.portfolio(trader.user_id)
    return PortfolioPublic(
        cash=book.cash,
        positions=[
            PositionPublic(
                symbol=h.symbol,
                quantity=h.quantity,
                average_price=h.average_price,
                market_value=h.market_value,
                unrealized_pnl=h.unrealized_pnl,
            )
            for h in book.positions
        ],
        equity=book.equity,
    )
