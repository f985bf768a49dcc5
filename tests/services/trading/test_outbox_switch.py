"""ASTRA_OUTBOX__ENABLED really switches the outbox off (real uvicorn, real redis-server).

The scenario a chaos drill runs (Redis away for trading while orders arrive), once
with the outbox and once with the dual write that replaces it when it is off:

    order A while Redis refuses connections ─▶ Redis back (empty) ─▶ order B
    outbox on:  A and B both reach the stream, in order (A waited in its row)
    outbox off: A answered 201 and is committed, but its events are gone; only B's arrive
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from backbone.bus.envelope import decode
from contracts.trading import PositionUpdated, TradeExecuted
from services.trading.app import create_app
from services.trading.config import OutboxSettings, Settings
from services.trading.models import outbox
from stack.netutil import free_port
from stack.redis_server import RedisServer
from tests.support.asgi_server import serve_app
from tests.support.poll import poll_until
from tests.support.settings import FAST_BUS, FAST_REGISTRY
from tests.support.tokens import TokenIssuer

pytestmark = pytest.mark.integration

ORDERS = "/api/v1/trading/orders"
ON_OFF = [pytest.param(True, id="outbox-on"), pytest.param(False, id="outbox-off")]


def test_the_outbox_is_on_by_default_and_switched_off_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASTRA_REGISTRY__TOKEN", "registry-token-for-tests-0123456789")
    assert Settings().outbox.enabled is True
    monkeypatch.setenv("ASTRA_OUTBOX__ENABLED", "false")
    assert Settings().outbox == OutboxSettings(enabled=False)


async def trade_order_ids(redis_url: str) -> list[str]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        entries: Any = await client.xrange(TradeExecuted.stream_key)
    finally:
        await client.aclose()
    return [str(decode(fields[b"envelope"]).data["order_id"]) for _, fields in entries]


async def outbox_rows(database_url: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(outbox))).scalar_one())
    finally:
        await engine.dispose()


def lost(registry: CollectorRegistry, stream: str) -> float:
    sample = registry.get_sample_value(
        "astra_outbox_bypassed_publish_failures_total", {"stream": stream}
    )
    return sample or 0.0


@pytest.mark.parametrize("enabled", ON_OFF)
async def test_an_order_placed_while_redis_is_down_reaches_the_bus_only_with_the_outbox(
    redis_server: RedisServer,
    redis_factory: Callable[..., RedisServer],
    tmp_path: Path,
    issuer: TokenIssuer,
    enabled: bool,
) -> None:
    values: dict[str, Any] = {
        "env": "test",
        "instance_id": "trading-1",
        "port": free_port(),
        "redis_url": redis_server.url,
        "run_dir": tmp_path,
        "jwks_url": issuer.jwks_url,
        "market_tick_ms": 0,
        "bus": FAST_BUS,
        "registry": FAST_REGISTRY,
        "outbox": OutboxSettings(enabled=enabled),
    }
    settings = Settings(**values)
    registry = CollectorRegistry()
    alice = {"Authorization": f"Bearer {issuer.token('u-alice', 'alice')}"}
    body = {"symbol": "AAPL", "side": "buy", "quantity": "1"}
    app = create_app(settings, registry=registry)
    async with serve_app(app, settings.port) as base, httpx.AsyncClient(base_url=base) as http:
        redis_server.kill()  # trading's Redis refuses connections from here on
        during = await http.post(ORDERS, json=body, headers=alice)
        # The dual write answers 201 too: the order is committed, only its events are not.
        assert during.status_code == 201, during.text
        order_a = during.json()["order_id"]
        assert (await http.get(f"{ORDERS}/{order_a}", headers=alice)).status_code == 200

        redis_factory(port=redis_server.port)  # back, empty (the old one lost everything)
        after = await http.post(ORDERS, json=body, headers=alice)
        assert after.status_code == 201, after.text
        order_b = after.json()["order_id"]

        async def b_arrived() -> list[str] | None:
            ids = await trade_order_ids(redis_server.url)
            return ids if order_b in ids else None

        # B's event is published after A's would be (outbox: id order; dual write: it
        # went out in B's request), so once B is there, A is there or never will be.
        ids = await poll_until(b_arrived, "order B's trade_executed", timeout=15)

    if enabled:
        assert ids == [order_a, order_b]  # nothing lost, in order
        assert lost(registry, TradeExecuted.stream_key) == 0
    else:
        assert ids == [order_b]  # order A's event is gone for good
        assert lost(registry, TradeExecuted.stream_key) == 1
        assert lost(registry, PositionUpdated.stream_key) == 1
        assert await outbox_rows(settings.database_url) == 0  # no row to resend from
