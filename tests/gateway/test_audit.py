"""Audit events: published after the answer, recorded once by `audit_trail_recorders`,
read back through the operator endpoint; operator endpoints refuse other credentials."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from contracts.gateway import ActionAudited, ActionAuditedData
from gateway.audit import AuditPublisher
from gateway.config import AuditSettings, GatewaySettings
from gateway.metrics import GatewayMetrics
from tests.gateway.conftest import GatewayAt, UpstreamFactory, until_routed
from tests.support.poll import poll_until
from tests.support.tokens import TokenIssuer

OPERATOR = {"Authorization": "Bearer operator-token-for-tests"}


async def _audit(http: aiohttp.ClientSession, base: str, **params: Any) -> list[dict[str, Any]]:
    async with http.get(f"{base}/api/v1/audit", params=params, headers=OPERATOR) as response:
        assert response.status == 200, await response.text()
        items: list[dict[str, Any]] = (await response.json())["items"]
        return items


@pytest.mark.integration
async def test_order_is_audited_after_its_answer_and_recorded_once(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    trading = await upstreams("trading", "trading-1", mode="slow", delay=0.3)
    redis = aioredis.Redis.from_url(redis_url)
    async with (
        TokenIssuer() as issuer,
        gateway_at(
            redis_url,
            jwks_url=issuer.jwks_url,
            public_routes=GatewaySettings.model_fields["public_routes"].default,
            operator_token="operator-token-for-tests",
        ) as base,
    ):
        await until_routed(http, f"{base}/api/v1/trading/markets")
        headers = {
            "Authorization": f"Bearer {issuer.token('user-7', 'gina')}",
            "X-Correlation-ID": "cid-audit-1",
        }
        order = asyncio.create_task(
            http.post(f"{base}/api/v1/trading/orders", json={"symbol": "ASTR"}, headers=headers)
        )

        async def upstream_has_it() -> bool:
            return any(s["path"] == "/api/v1/trading/orders" for s in trading.seen)

        await poll_until(upstream_has_it, "the order upstream", 5)
        # The service is still working on it: nothing may be published yet.
        assert await redis.xlen(ActionAudited.stream_key) == 0
        async with await order as response:
            assert response.status == 200

        async def recorded() -> list[dict[str, Any]]:
            return await _audit(http, base, subject="user-7")

        [entry] = await poll_until(recorded, "the order in the audit trail", 5)
        assert entry["action"] == "order"
        assert entry["route"] == "/api/v1/trading/orders"
        assert entry["status"] == 200
        assert entry["correlation_id"] == "cid-audit-1"
        assert entry["client_ip"] == "127.0.0.1"
        assert entry["latency_ms"] >= 300
        assert await _audit(http, base, limit=10) == [entry]  # the global trail too

        # A refused attempt is an outcome as well: recorded, without a subject.
        async with http.post(f"{base}/api/v1/trading/orders", json={}) as response:
            assert response.status == 401

        async def two() -> list[dict[str, Any]] | None:
            items = await _audit(http, base)
            return items if len(items) == 2 else None

        newest, _ = await poll_until(two, "the refused order in the trail", 5) or []
        assert (newest["status"], newest["subject"]) == (401, None)
        # Ordinary reads are not audited.
        async with http.get(f"{base}/api/v1/trading/markets") as response:
            assert response.status == 200
        assert await redis.xlen(ActionAudited.stream_key) == 2
    await redis.aclose()


@pytest.mark.integration
async def test_operator_endpoints_need_the_operator_token(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    await upstreams("users", "users-1")
    token = "operator-token-for-tests"
    async with gateway_at(redis_url, operator_token=token) as base:
        await until_routed(http, f"{base}/api/v1/users/ping")
        for path in ("/api/v1/services", "/api/v1/audit"):
            for headers in (
                {},
                {"Authorization": "Bearer operator-token-for-testz"},
                {"Authorization": f"Basic {token}"},
                {"X-User-ID": "admin"},
            ):
                async with http.get(f"{base}{path}", headers=headers) as response:
                    assert response.status == 401, (path, headers)
                    assert response.content_type == "application/problem+json"
        async with http.get(f"{base}/api/v1/services", headers=OPERATOR) as response:
            assert response.status == 200
            doc = await response.json()
        assert doc["services"]["users"]["breaker"] == "closed"
        assert [i["id"] for i in doc["services"]["users"]["instances"]] == ["users-1"]
        assert doc["services"]["trading"]["instances"] == []


def test_placeholder_operator_token_is_refused_in_prod() -> None:
    with pytest.raises(ValueError, match="OPERATOR_TOKEN"):
        GatewaySettings(env="prod", registry={"token": "a-real-registry-secret"})
    GatewaySettings(env="test")  # local and test stacks may use it


class _FailingPublisher:
    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def publish(self, *_: object) -> None:
        await self.release.wait()
        raise ConnectionError("redis is away")


async def test_publish_failures_are_counted_and_never_block() -> None:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    publisher = _FailingPublisher()
    auditor = AuditPublisher(publisher, AuditSettings(max_pending=2), metrics)  # type: ignore[arg-type]
    data = ActionAuditedData(
        action="order",
        subject="u",
        method="POST",
        route="/api/v1/trading/orders",
        status=201,
        latency_ms=1.0,
        client_ip="127.0.0.1",
        correlation_id="c",
        occurred_at=datetime(2025, 1, 1, tzinfo=UTC),
    )

    async def make() -> ActionAuditedData:
        return data

    for _ in range(3):  # returns at once; the third is over the bound and dropped
        auditor.submit(make)
    failures = "astra_gateway_audit_publish_failures_total"
    assert registry.get_sample_value(failures) == 1
    publisher.release.set()
    await auditor.aclose()
    assert registry.get_sample_value(failures) == 3
