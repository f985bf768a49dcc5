"""The trading service: a seeded market, market orders, positions and virtual cash."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry

from backbone.service import Runtime, ServiceSpec, create_service_app
from contracts.trading import PositionUpdated, TradeExecuted
from services.trading.config import Settings, get_settings
from services.trading.errors import TradingError
from services.trading.ledger import Ledger
from services.trading.market import Market
from services.trading.models import metadata
from services.trading.routes import on_trading_error, router


async def _on_start(runtime: Runtime) -> None:
    settings = runtime.settings
    assert isinstance(settings, Settings)
    assert runtime.engine is not None
    assert runtime.sessions is not None
    assert runtime.outbox is not None
    assert runtime.relay is not None
    market = Market(
        settings.market_seed, tick_ms=settings.market_tick_ms, epoch=settings.market_epoch
    )
    runtime.state["ledger"] = Ledger(
        runtime.sessions,
        runtime.outbox,
        runtime.relay,
        market,
        starting_cash=settings.starting_cash,
        row_locks=runtime.engine.dialect.name == "postgresql",
    )


SPEC = ServiceSpec(
    name="trading",
    description="A seeded random-walk market; market orders against 10,000.00 of virtual cash.",
    routers=[router],
    metadata=metadata,
    outbox=True,
    published=[TradeExecuted, PositionUpdated],
    on_start=_on_start,
    exception_handlers={TradingError: on_trading_error},
)


def create_app(settings: Settings | None = None, registry: CollectorRegistry = REGISTRY) -> FastAPI:
    return create_service_app(SPEC, settings or get_settings(), registry=registry)
