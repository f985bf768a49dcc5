"""Audit events: published after the answer, recorded once by `audit_trail_recorders`,
read back through the operator endpoint; operator endpoints refuse other credentials."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from backbone.bus.envelope import decode
from backbone.bus.publisher import Publisher
from backbone.config import BusSettings
from contracts.gateway import ActionAudited, ActionAuditedData
from gateway.audit import AuditPublisher, audit_trail_key
from gateway.config import AuditSettings, GatewaySettings, RateLimitRule, RateLimitSettings
from gateway.metrics import GatewayMetrics
from tests.gateway.conftest import GatewayAt, UpstreamFactory, until_routed
from tests.gateway.users_service import PASSWORD, login, register, users_service
from tests.support.poll import poll_until
from tests.support.settings import TEST_OPERATOR_TOKEN, TEST_REGISTRY_TOKEN
from tests.support.tokens import TokenIssuer

OPERATOR = {"Authorization": "Bearer operator-token-for-tests"}


async def _audit(http: aiohttp.ClientSession, base: str, **params: Any) -> list[dict[str, Any]]:
    async with http.get(f"{base}/api/v1/audit", params=params, headers=OPERATOR) as response:
        assert response.status == 200, await response.text()
        items: list[dict[str, Any]] = (await response.json())["items"]
        return items


async def _skipped(http: aiohttp.ClientSession, base: str, action: str, reason: str) -> float:
    """`astra_gateway_audit_skipped_total{action, reason}` as the gateway exposes it."""
    async with http.get(f"{base}/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "astra_gateway_audit_skipped_total" and sample.labels == {
                "action": action,
                "reason": reason,
            }:
                return sample.value
    return 0.0


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

        # A 401 the gateway decided never reached the service: counted, not recorded.
        # (This test used to expect it in the trail; anonymous refusals there let
        # anyone roll the capped trail: test_refusals_by_the_gateway_are_counted_not_recorded.)
        async with http.post(f"{base}/api/v1/trading/orders", json={}) as response:
            assert response.status == 401
        await poll_until(
            lambda: _skipped(http, base, "order", "unauthenticated"), "the refusal counted", 5
        )
        # Ordinary reads are not audited.
        async with http.get(f"{base}/api/v1/trading/markets") as response:
            assert response.status == 200
        assert await redis.xlen(ActionAudited.stream_key) == 1
    await redis.aclose()


@pytest.mark.integration
async def test_operator_endpoints_need_the_operator_token(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    await upstreams("users", "users-1")
    token = "operator-token-for-tests"
    # A budget wide enough for this test's 8 wrong tokens (the guessing limit has its
    # own test: tests/gateway/test_operator_surface.py).
    wide = RateLimitSettings(operator=RateLimitRule(rate=100, burst=100))
    async with gateway_at(redis_url, operator_token=token, rate_limit=wide) as base:
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


@pytest.mark.parametrize("env", ["dev", "test", "prod"])
def test_missing_or_placeholder_secrets_are_refused_in_every_env(env: str) -> None:
    registry = {"token": TEST_REGISTRY_TOKEN}
    with pytest.raises(ValueError, match="ASTRA_GATEWAY_OPERATOR_TOKEN is not set"):
        GatewaySettings(env=env, registry=registry)
    with pytest.raises(ValueError, match="published placeholder"):
        GatewaySettings(env=env, registry=registry, operator_token="dev-operator-token")
    with pytest.raises(ValueError, match="ASTRA_REGISTRY__TOKEN is not set"):
        GatewaySettings(env=env, operator_token=TEST_OPERATOR_TOKEN)
    with pytest.raises(ValueError, match="ASTRA_REGISTRY__TOKEN is a published placeholder"):
        GatewaySettings(
            env=env, registry={"token": "dev-registry-token"}, operator_token=TEST_OPERATOR_TOKEN
        )
    with pytest.raises(ValueError, match="at least 16"):
        GatewaySettings(env=env, registry=registry, operator_token="short")
    GatewaySettings(env=env, registry=registry, operator_token=TEST_OPERATOR_TOKEN)


def _order_audited(occurred_at: datetime) -> ActionAuditedData:
    return ActionAuditedData(
        action="order",
        subject="u",
        method="POST",
        route="/api/v1/trading/orders",
        status=201,
        latency_ms=1.0,
        client_ip="127.0.0.1",
        correlation_id="c",
        occurred_at=occurred_at,
    )


class _FailingPublisher:
    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def publish(self, *_: object, **__: object) -> None:
        await self.release.wait()
        raise ConnectionError("redis is away")


class _FlakyPublisher:
    """Refuses the first `failures` attempts, then accepts: what a slow link does."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: list[str] = []  # the event id of each attempt

    async def publish(self, *_: object, event_id: str, **__: object) -> None:
        self.attempts.append(event_id)
        if len(self.attempts) <= self.failures:
            raise ConnectionError("no reply in time")


async def test_publish_failures_are_counted_and_never_block() -> None:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    publisher = _FailingPublisher()
    auditor = AuditPublisher(publisher, AuditSettings(max_pending=2, publish_deadline=0.3), metrics)  # type: ignore[arg-type]
    data = _order_audited(datetime(2025, 1, 1, tzinfo=UTC))

    async def make() -> ActionAuditedData:
        return data

    for _ in range(3):  # returns at once; the third is over the bound and dropped
        auditor.submit(make)
    failures = "astra_gateway_audit_publish_failures_total"
    assert registry.get_sample_value(failures) == 1
    publisher.release.set()
    await auditor.aclose()
    assert registry.get_sample_value(failures) == 3


@pytest.mark.integration
async def test_an_audit_event_is_as_old_as_its_action_not_its_publication(
    redis_client: aioredis.Redis,
) -> None:
    """Consumers measure freshness from the envelope's `occurred_at`: an action whose
    publication waited (here: 1 s building the event; in a drill, a slow Redis link)
    must read as late as it is (found: such events read fresh, AuditEventsStale deaf)."""
    registry = CollectorRegistry()
    publisher = Publisher(
        redis_client, producer="gateway", settings=BusSettings(), registry=registry
    )
    auditor = AuditPublisher(publisher, AuditSettings(), GatewayMetrics(registry))
    acted = datetime.now(UTC)
    data = _order_audited(acted)

    async def slow_make() -> ActionAuditedData:
        await asyncio.sleep(1.0)  # the delay under test, not a synchronisation
        return data

    auditor.submit(slow_make)
    await auditor.aclose()
    entries = await redis_client.xrange(ActionAudited.stream_key)
    assert len(entries) == 1
    envelope = decode(entries[0][1][b"envelope"])
    assert envelope.occurred_at == acted
    assert (datetime.now(UTC) - envelope.occurred_at).total_seconds() >= 1.0


async def test_a_failed_publication_is_retried_with_the_same_event_id() -> None:
    """A slow Redis must not thin the trail (found: a drill's 1.8 s link lost 92 of ~100
    audit events): retried until the deadline, under one event id (a timed-out XADD may
    have landed; the recorder applies one id once), and not counted as lost."""
    registry = CollectorRegistry()
    publisher = _FlakyPublisher(failures=3)
    auditor = AuditPublisher(publisher, AuditSettings(), GatewayMetrics(registry))  # type: ignore[arg-type]
    data = _order_audited(datetime.now(UTC))

    async def make() -> ActionAuditedData:
        return data

    auditor.submit(make)
    await auditor.aclose()
    assert len(publisher.attempts) == 4
    assert len(set(publisher.attempts)) == 1
    assert auditor.published == 1
    assert registry.get_sample_value("astra_gateway_audit_publish_failures_total") == 0


def _gateway_for_users(redis_url: str) -> dict[str, Any]:
    """A gateway in front of the real users service, with the stack's public routes."""
    return {
        "services": ("users",),
        "public_routes": GatewaySettings.model_fields["public_routes"].default,
        "operator_token": "operator-token-for-tests",
        # Room for the few registrations and logins of one test from one address.
        "rate_limit": {"auth": {"rate": 0.2, "burst": 20}},
    }


async def _trail_bytes(redis: aioredis.Redis) -> list[bytes]:
    """Every stored byte of the trail: both sorted sets' members and the stream's entries."""
    stored: list[Any] = []
    for key in await redis.keys("*audit*"):
        if await redis.type(key) == b"zset":
            stored += await redis.zrange(key, 0, -1)
    entries: list[Any] = list(await redis.xrange(ActionAudited.stream_key) or [])
    for _, fields in entries:
        stored += list(fields.values())
    return [bytes(blob) for blob in stored]


@pytest.mark.integration
async def test_login_is_recorded_under_the_account_that_logged_in_not_the_bearer_sent(
    redis_url: str, tmp_path: Path, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    async with (
        users_service(redis_url, tmp_path),
        gateway_at(redis_url, **_gateway_for_users(redis_url)) as base,
    ):
        await until_routed(http, f"{base}/health/ready")
        alice = await register(http, base, "alice_01")
        bob = await register(http, base, "bob_02")
        bobs_token = await login(http, base, "bob_02")
        # Bob's (valid) token on Alice's login: the gateway verifies it, but the login
        # is about whoever the credentials and the answer name.
        async with http.post(
            f"{base}/api/v1/users/login",
            json={"username": "alice_01", "password": PASSWORD},
            headers={"Authorization": f"Bearer {bobs_token}"},
        ) as response:
            assert response.status == 200

        async def logins(subject: str) -> list[dict[str, Any]]:
            return [e for e in await _audit(http, base, subject=subject) if e["action"] == "login"]

        [entry] = await poll_until(lambda: logins(alice), "Alice's login in her trail", 5)
        assert (entry["status"], entry["attempted_username"]) == (200, "alice_01")
        # Bob's trail has his own login only: nothing done with his token as a bystander.
        [own] = await logins(bob)
        assert own["attempted_username"] == "bob_02"
        assert own["event_id"] != entry["event_id"]


@pytest.mark.integration
async def test_failed_login_records_the_attempted_username_and_address_never_the_password(
    redis_url: str, tmp_path: Path, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    wrong = "not-the-password-9f3c1"
    async with (
        users_service(redis_url, tmp_path),
        gateway_at(redis_url, **_gateway_for_users(redis_url)) as base,
    ):
        await until_routed(http, f"{base}/health/ready")
        await register(http, base, "carol_03")
        async with http.post(
            f"{base}/api/v1/users/login", json={"username": "carol_03", "password": wrong}
        ) as response:
            assert response.status == 401  # the users service's answer

        async def failed() -> list[dict[str, Any]]:
            return [e for e in await _audit(http, base) if e["action"] == "login"]

        [entry] = await poll_until(failed, "the failed login in the trail", 5)
        assert entry["status"] == 401
        assert entry["subject"] is None
        assert entry["attempted_username"] == "carol_03"
        assert entry["client_ip"] == "127.0.0.1"
        [registered] = [e for e in await _audit(http, base) if e["action"] == "register"]
        assert registered["attempted_username"] == "carol_03"
        stored = await _trail_bytes(redis)
        assert stored
        for blob in stored:
            assert wrong.encode() not in blob
            assert PASSWORD.encode() not in blob
    await redis.aclose()


@pytest.mark.integration
async def test_refusals_by_the_gateway_are_counted_not_recorded(
    redis_url: str,
    upstreams: UpstreamFactory,
    gateway_at: GatewayAt,
    http: aiohttp.ClientSession,
    issuer: TokenIssuer,
) -> None:
    await upstreams("trading", "trading-1")
    redis = aioredis.Redis.from_url(redis_url)
    async with gateway_at(
        redis_url,
        jwks_url=issuer.jwks_url,
        services=("trading",),
        public_routes=GatewaySettings.model_fields["public_routes"].default,
        operator_token="operator-token-for-tests",
        rate_limit={"orders": {"rate": 0.01, "burst": 25}},
    ) as base:
        await until_routed(http, f"{base}/api/v1/trading/markets")
        statuses = []
        for _ in range(50):  # anonymous orders: a 401 until the address's budget is spent
            async with http.post(f"{base}/api/v1/trading/orders", json={}) as response:
                statuses.append(response.status)
        assert statuses == [401] * 25 + [429] * 25

        async def counted() -> bool:
            return (
                await _skipped(http, base, "order", "unauthenticated") == 25
                and await _skipped(http, base, "order", "rate_limited") == 25
            )

        await poll_until(counted, "the 50 refusals counted", 5)
        assert await redis.xlen(ActionAudited.stream_key) == 0
        # The trail does work: an order a service was asked about is there, alone.
        token = issuer.token("user-9", "ida")
        async with http.post(
            f"{base}/api/v1/trading/orders",
            json={},
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 200
        [entry] = await poll_until(lambda: _audit(http, base), "the served order", 5)
        assert (entry["subject"], entry["status"]) == ("user-9", 200)
        assert await redis.xlen(ActionAudited.stream_key) == 1
    await redis.aclose()


@pytest.mark.integration
async def test_entries_older_than_the_retention_are_trimmed(
    redis_url: str,
    upstreams: UpstreamFactory,
    gateway_at: GatewayAt,
    http: aiohttp.ClientSession,
    issuer: TokenIssuer,
) -> None:
    await upstreams("trading", "trading-1")
    redis = aioredis.Redis.from_url(redis_url)
    now_ms = int(time.time() * 1000)
    old, recent = b'{"old": true}', b'{"recent": true}'
    for key in (audit_trail_key(), audit_trail_key("user-5")):
        await redis.zadd(key, {old: now_ms - 2 * 3600 * 1000, recent: now_ms - 600 * 1000})
    async with gateway_at(
        redis_url,
        jwks_url=issuer.jwks_url,
        services=("trading",),
        operator_token="operator-token-for-tests",
        audit={"retention_seconds": 3600},
    ) as base:
        await until_routed(http, f"{base}/api/v1/trading/markets")
        headers = {"Authorization": f"Bearer {issuer.token('user-5')}"}
        async with http.post(f"{base}/api/v1/trading/orders", json={}, headers=headers) as response:
            assert response.status == 200

        async def recorded() -> bool:
            members = await redis.zrange(audit_trail_key("user-5"), 0, -1)
            return any(b'"action":"order"' in m for m in members)

        await poll_until(recorded, "the order in user-5's trail", 5)
        for key in (audit_trail_key(), audit_trail_key("user-5")):
            members = await redis.zrange(key, 0, -1)
            assert old not in members  # 2 h old, past the 1 h retention
            assert recent in members  # 10 min old: kept
        ttl = await redis.ttl(audit_trail_key("user-5"))
        assert 0 < ttl <= 3600  # an idle subject's trail goes with its last entry
        # Operators never see past the retention, even before the next write trims.
        await redis.zadd(audit_trail_key(), {old: now_ms - 2 * 3600 * 1000})
        items = await _audit(http, base, limit=10)
        assert {"old": True} not in items
        assert {"recent": True} in items
    await redis.aclose()
