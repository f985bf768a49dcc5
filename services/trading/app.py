"""The trading service: a seeded market, market orders, positions and virtual cash."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry

from backbone.service import ContextSpec, OutboxParts, ServiceSpec, create_service_app
from contracts.trading import PositionUpdated, TradeExecuted
from services.trading.config import Settings, get_settings
from services.trading.deps import TradingContext
from services.trading.dualwrite import DirectPublish
from services.trading.errors import TradingError
from services.trading.ledger import Ledger
from services.trading.market import Market
from services.trading.models import metadata
from services.trading.routes import on_trading_error, router
from services.trading.unit_of_work import unit_of_work_for


async def _build(parts: OutboxParts[Settings]) -> TradingContext:
    settings = parts.settings
    market = Market(
        settings.market_seed, tick_ms=settings.market_tick_ms, epoch=settings.market_epoch
    )
    ledger = Ledger(
        parts.sessions,
        parts.outbox,
        parts.relay,
        market,
        starting_cash=settings.starting_cash,
        row_locks=parts.engine.dialect.name == "postgresql",
        unit_of_work=unit_of_work_for(parts.engine, parts.sessions),
        # ASTRA_OUTBOX__ENABLED=false (chaos drills only): the dual write, see dualwrite.py.
        direct=(
            None
            if settings.outbox.enabled
            else DirectPublish(parts.publisher, parts.metrics_registry)
        ),
    )
    return TradingContext(ledger)


async def _stop(context: TradingContext) -> None:
    await context.ledger.aclose()


SPEC = ServiceSpec(
    name="trading",
    description="A seeded random-walk market; market orders against 10,000.00 of virtual cash.",
    context=ContextSpec.with_outbox(metadata, _build),
    routers=[router],
    published=[TradeExecuted, PositionUpdated],
    exception_handlers={TradingError: on_trading_error},
    on_stop=_stop,
)


def create_app(settings: Settings | None = None, registry: CollectorRegistry = REGISTRY) -> FastAPI:
    return create_service_app(SPEC, settings or get_settings(), registry=registry)
