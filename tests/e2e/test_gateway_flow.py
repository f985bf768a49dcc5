"""The public API through the gateway of a whole stack (`astra up`): identity at the edge,
correlation into the service's logs, and the audit trail of an order."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from contracts.gateway import ActionAudited
from gateway.schemas import MarketPublic, OrderPublic, TokenPublic, UserPublic
from tests.e2e.conftest import Stack
from tests.support.poll import poll_until

pytestmark = pytest.mark.e2e


async def test_register_login_trade_through_the_gateway(stack: Stack) -> None:
    gw = stack.url("gateway-1")
    async with httpx.AsyncClient(base_url=gw, timeout=10) as http:
        body = {"username": "gwuser", "email": "gwuser@example.com", "password": "correct horse 1"}
        created = await http.post("/api/v1/users/register", json=body)
        assert created.status_code == 201, created.text
        user = UserPublic.model_validate(created.json())
        login = await http.post(
            "/api/v1/users/login", json={"username": "gwuser", "password": body["password"]}
        )
        assert login.status_code == 200, login.text
        token = TokenPublic.model_validate(login.json()).access_token
        auth = {"Authorization": f"Bearer {token}"}

        markets = await http.get("/api/v1/trading/markets", headers=auth)
        assert markets.status_code == 200, markets.text
        symbol = MarketPublic.model_validate(markets.json()[0]).symbol

        # Identity comes from the token only: a spoofed header without one is refused.
        spoofed = await http.get("/api/v1/trading/portfolio", headers={"X-User-ID": user.id})
        assert spoofed.status_code == 401
        assert spoofed.headers["content-type"].startswith("application/problem+json")

        cid = f"e2e-gw-{uuid.uuid4().hex}"
        order = await http.post(
            "/api/v1/trading/orders",
            json={"symbol": symbol, "side": "buy", "quantity": "1"},
            headers={**auth, "X-Correlation-ID": cid},
        )
        assert order.status_code == 201, order.text
        assert order.headers["x-correlation-id"] == cid
        assert order.headers["cache-control"] == "no-store"
        assert order.headers["x-content-type-options"] == "nosniff"
        placed = OrderPublic.model_validate(order.json())
        fetched = await http.get(f"/api/v1/trading/orders/{placed.order_id}", headers=auth)
        assert fetched.status_code == 200
        assert OrderPublic.model_validate(fetched.json()) == placed

        # The same request in the trading service's own log, by correlation ID.
        log_file = stack.run_dir / "log" / "trading-1.jsonl"

        async def logged() -> list[dict[str, Any]]:
            if not log_file.exists():
                return []
            lines = [json.loads(line) for line in log_file.read_text().splitlines() if line]
            return [line for line in lines if line.get("correlation_id") == cid]

        lines = await poll_until(logged, "the order in trading-1.jsonl", 5)
        assert any(line.get("route") == "/api/v1/trading/orders" for line in lines), lines

        # The audit event: recorded by audit_trail_recorders, read by an operator.
        operator = stack.operator_headers
        assert (await http.get("/api/v1/audit")).status_code == 401

        async def audited() -> dict[str, Any] | None:
            r = await http.get("/api/v1/audit", params={"subject": user.id}, headers=operator)
            assert r.status_code == 200, r.text
            return next((e for e in r.json()["items"] if e["correlation_id"] == cid), None)

        entry = await poll_until(audited, "the order in the audit trail", 10)
        assert entry is not None
        assert (entry["action"], entry["status"], entry["subject"]) == ("order", 201, user.id)
        assert entry["route"] == "/api/v1/trading/orders"
        actions = await http.get("/api/v1/audit", params={"subject": user.id}, headers=operator)
        assert {e["action"] for e in actions.json()["items"]} == {"register", "login", "order"}

    # Published after the outcome: the stream entry is younger than the fill.
    # As the read-only `operator` Redis user: the stack's Redis has no anonymous access.
    redis = aioredis.Redis.from_url(stack.redis_url_as("operator"), decode_responses=True)
    try:
        entries: Any = await redis.xrange(ActionAudited.stream_key)
    finally:
        await redis.aclose()
    [entry_id] = [
        eid for eid, fields in entries if json.loads(fields["envelope"])["correlation_id"] == cid
    ]
    published_ms = int(str(entry_id).split("-")[0])
    executed = placed.executed_at
    assert isinstance(executed, datetime)
    assert published_ms >= int(executed.timestamp() * 1000)
