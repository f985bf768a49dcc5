"""Operator surface: guessing the operator token meets 429; anonymous readiness says little."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from gateway.config import RateLimitRule, RateLimitSettings
from gateway.operator import _right_token_rule
from tests.gateway.conftest import GatewayAt, UpstreamFactory, until_routed
from tests.support.poll import poll_until
from tests.support.settings import TEST_OPERATOR_TOKEN

pytestmark = pytest.mark.integration

RIGHT = {"Authorization": f"Bearer {TEST_OPERATOR_TOKEN}"}


async def _get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    async with http.get(url, headers=headers) as response:
        return response.status, dict(response.headers), await response.json(content_type=None)


async def test_guessing_the_operator_token_meets_429_even_for_the_right_one(
    redis_url: str, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    limits = RateLimitSettings(operator=RateLimitRule(rate=1, burst=3))
    async with gateway_at(redis_url, rate_limit=limits) as base:
        # The operator's own use is not throttled: a right token costs a sliver.
        for _ in range(30):
            status, _, _ = await _get(http, f"{base}/api/v1/services", RIGHT)
            assert status == 200
        statuses: list[int] = []
        for attempt in range(10):
            guess = {"Authorization": f"Bearer wrong-guess-{attempt:04d}-padding"}
            status, headers, doc = await _get(http, f"{base}/api/v1/services", guess)
            statuses.append(status)
            if status == 429:
                break
        assert statuses == [401, 401, 401, 429], statuses
        assert headers["Content-Type"] == "application/problem+json"
        assert int(headers["Retry-After"]) >= 1
        assert doc["status"] == 429
        # The right token now gets the same 429: no oracle while the budget is spent.
        status, headers, _ = await _get(http, f"{base}/api/v1/services", RIGHT)
        assert status == 429
        assert int(headers["Retry-After"]) >= 1
        # A missing token and a guess through /health/ready count the same way.
        assert (await _get(http, f"{base}/api/v1/audit"))[0] == 429
        assert (await _get(http, f"{base}/health/ready", {"Authorization": "Bearer x"}))[0] == 429

        async def refilled() -> bool:
            return (await _get(http, f"{base}/api/v1/services", RIGHT))[0] == 200

        await poll_until(refilled, "the operator budget refilled", timeout=5)


def test_the_right_token_is_refused_exactly_when_a_guess_would_be() -> None:
    """GCRA with T = 1/rate, b = burst: a guess passes while TAT - now <= T*(b-1)."""
    for rule in (RateLimitRule(rate=0.2, burst=5), RateLimitRule(rate=0.3, burst=1)):
        cheap = _right_token_rule(rule)
        interval, tolerance = 1 / rule.rate, rule.burst / rule.rate
        cheap_interval, cheap_tolerance = 1 / cheap.rate, cheap.burst / cheap.rate
        for ahead in (0.0, interval * (rule.burst - 1) - 1e-6, interval * (rule.burst - 1) + 1e-6):
            guess_allowed = ahead + interval <= tolerance + 1e-9
            right_allowed = ahead + cheap_interval <= cheap_tolerance + 1e-9
            assert guess_allowed == right_allowed, (rule, ahead)
        assert cheap_interval <= interval / 10_000


async def test_anonymous_readiness_names_failing_checks_only(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    users = await upstreams("users", "users-1")
    async with gateway_at(redis_url) as base:
        await until_routed(http, f"{base}/api/v1/users/x")
        # One service missing: degraded, not unready (the others' routes serve).
        async with http.get(f"{base}/health/ready") as response:
            text = await response.text()
            assert response.status == 200
        doc = await _get(http, f"{base}/health/ready")
        assert doc[2] == {"status": "degraded", "failing": ["services.trading"]}, text
        for secret in ("http://", "users-1", users.url, "breaker"):
            assert secret not in text, (secret, text)

        status, _, full = await _get(http, f"{base}/health/ready", RIGHT)
        assert status == 200
        assert full["status"] == "degraded"
        assert any("no instance of trading" in d for d in full["checks"]["degraded"])
        instances = full["checks"]["services"]["users"]["instances"]
        assert [(i["id"], i["url"]) for i in instances] == [("users-1", users.url)]
        assert "breaker" in full["checks"]["services"]["users"]

        trading = await upstreams("trading", "trading-1")

        async def ready() -> bool:
            return (await _get(http, f"{base}/health/ready"))[2].get("status") == "ready"

        await poll_until(ready, "gateway ready")
        async with http.get(f"{base}/health/ready") as response:
            assert await response.json() == {"status": "ready"}
        status, _, full = await _get(http, f"{base}/health/ready", RIGHT)
        assert status == 200
        assert trading.url in str(full)
        # A wrong credential on the anonymous route is refused, not answered anonymously.
        assert (await _get(http, f"{base}/health/ready", {"Authorization": "Bearer x"}))[0] == 401
