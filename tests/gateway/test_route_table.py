"""The route table: one `RouteSpec` per public route, read by every part of the edge.

What a declaration says, what the operator's settings may override (and that a
misspelt route or policy stops the gateway at start), what an undeclared path gets,
and that the spec's retry rule and SLO class reach the wire and the metrics.
"""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import GatewaySettings, RateLimitRule, RateLimitSettings, UpstreamSettings
from gateway.public_api import CLASS_TIMEOUTS, PublicRoutes, RouteSpec
from tests.gateway.conftest import GatewayAt, UpstreamFactory
from tests.support.poll import poll_until
from tests.support.settings import TEST_OPERATOR_TOKEN, TEST_REGISTRY_TOKEN

ORDERS = "POST /api/v1/trading/orders"


def test_every_route_has_its_class_policy_and_public_rule() -> None:
    specs = {spec.key: spec for spec in PublicRoutes().all()}
    for key, spec in specs.items():
        if spec.method == "GET":
            assert spec.slo_class == "read", key
    assert {k for k, s in specs.items() if s.slo_class == "auth"} == {
        "POST /api/v1/users/register",
        "POST /api/v1/users/login",
    }
    assert specs[ORDERS].slo_class == "write"
    assert {k for k, s in specs.items() if s.public} == {
        "POST /api/v1/users/register",
        "POST /api/v1/users/login",
        "GET /api/v1/trading/markets",
        "GET /api/v1/gamification/leaderboard",
        "GET /api/v1/social/feed",
    }
    # Only the order route's service executes a keyed retry once.
    assert {k for k, s in specs.items() if s.idempotency_key} == {ORDERS}
    assert {k: (s.audit, s.audit_bodies) for k, s in specs.items() if s.audit} == {
        "POST /api/v1/users/register": ("register", True),
        "POST /api/v1/users/login": ("login", True),
        ORDERS: ("order", False),
    }
    defaults = RateLimitSettings()
    assert specs[ORDERS].rule == defaults.orders
    assert specs["POST /api/v1/users/login"].rule == defaults.auth
    assert specs["GET /api/v1/users/me"].rule == defaults.default
    # No route declares its own timeout: each has its class's (gateway/public_api.py).
    assert all(s.timeout == CLASS_TIMEOUTS[s.slo_class] for s in specs.values())
    assert specs["GET /api/v1/trading/markets"].timeout == 1.0


def test_an_undeclared_path_gets_the_service_label_default_policy_and_a_token_check() -> None:
    routes = PublicRoutes(("trading",))
    read = routes.resolve("GET", "/api/v1/trading/markets/BTC-USD", "trading")
    write = routes.resolve("DELETE", "/api/v1/trading/orders/7", "trading")
    for spec in (read, write):
        assert not spec.declared
        assert spec.template == "/api/v1/trading/{path}"
        assert (spec.policy, spec.rule, spec.public) == (
            "default",
            RateLimitSettings().default,
            False,
        )
        assert (spec.audit, spec.idempotency_key, spec.timeout) == (None, False, None)
    assert (read.slo_class, write.slo_class) == ("read", "write")
    assert routes.resolve("HEAD", "/api/v1/trading/x", "trading").slo_class == "read"
    declared = routes.resolve("GET", "/api/v1/trading/orders/7", "trading")
    assert (declared.template, declared.declared) == ("/api/v1/trading/orders/{order_id}", True)


def test_extra_public_prefixes_make_routes_below_them_public() -> None:
    routes = PublicRoutes(("users", "trading"), extra_public=("GET /api/v1/trading/",))
    assert routes.resolve("GET", "/api/v1/trading/portfolio", "trading").public
    assert routes.resolve("GET", "/api/v1/trading/anything/else", "trading").public
    assert not routes.resolve("POST", "/api/v1/trading/orders", "trading").public
    assert not routes.resolve("GET", "/api/v1/users/me", "users").public
    assert not routes.resolve("GET", "/api/v1/tradingx", "trading").public  # not below it


def test_settings_override_a_routes_policy_rule_and_timeout() -> None:
    routes = PublicRoutes(
        rate_limit=RateLimitSettings(
            routes={"GET /api/v1/trading/portfolio": "orders", ORDERS: "bulk"},
            policies={"bulk": RateLimitRule(rate=1, burst=2)},
        ),
        upstream=UpstreamSettings(route_timeouts={ORDERS: 5.0}),
    )
    portfolio = routes.route("GET", "/api/v1/trading/portfolio", "trading")
    order = routes.route("POST", "/api/v1/trading/orders", "trading")
    assert portfolio is not None
    assert order is not None
    assert (portfolio.policy, portfolio.rule) == ("orders", RateLimitSettings().orders)
    assert (order.policy, order.rule, order.timeout) == (
        "bulk",
        RateLimitRule(rate=1, burst=2),
        5.0,
    )


def test_a_misspelt_route_or_a_policy_without_a_rule_fails_at_start() -> None:
    with pytest.raises(ValueError, match="not declared"):
        PublicRoutes(upstream=UpstreamSettings(route_timeouts={"POST /api/v1/trading/order": 1}))
    with pytest.raises(ValueError, match="not declared"):
        PublicRoutes(rate_limit=RateLimitSettings(routes={"GET /api/v1/nope": "default"}))
    with pytest.raises(ValueError, match="no rate-limit rule 'bulk'"):
        PublicRoutes(rate_limit=RateLimitSettings(routes={ORDERS: "bulk"}))
    twice = RouteSpec("GET", "/api/v1/trading/markets", slo_class="read")
    with pytest.raises(ValueError, match="declared twice"):
        PublicRoutes(specs=[twice, twice])


def test_a_new_policy_can_carry_its_own_rule_and_settings_still_win() -> None:
    reports = RouteSpec(
        "POST",
        "/api/v1/trading/reports",
        slo_class="write",
        policy="reports",
        rule=RateLimitRule(rate=0.5, burst=3),
        audit="report",
    )
    alone = PublicRoutes(("trading",), specs=[reports]).route(
        "POST", "/api/v1/trading/reports", "trading"
    )
    assert alone is not None
    assert (alone.service, alone.rule) == ("trading", RateLimitRule(rate=0.5, burst=3))
    tuned = PublicRoutes(
        ("trading",),
        specs=[reports],
        rate_limit=RateLimitSettings(policies={"reports": RateLimitRule(rate=2, burst=9)}),
    ).route("POST", "/api/v1/trading/reports", "trading")
    assert tuned is not None
    assert tuned.rule == RateLimitRule(rate=2, burst=9)
    other = RouteSpec(
        "GET",
        "/api/v1/trading/reports",
        slo_class="read",
        policy="reports",
        rule=RateLimitRule(rate=9, burst=9),
    )
    with pytest.raises(ValueError, match="two different rules"):
        PublicRoutes(("trading",), specs=[reports, other])


def test_route_overrides_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRA_REGISTRY__TOKEN", TEST_REGISTRY_TOKEN)
    monkeypatch.setenv("ASTRA_GATEWAY_OPERATOR_TOKEN", TEST_OPERATOR_TOKEN)
    monkeypatch.setenv("ASTRA_RATE_LIMIT__ROUTES", '{"POST /api/v1/trading/orders": "bulk"}')
    monkeypatch.setenv("ASTRA_RATE_LIMIT__POLICIES", '{"bulk": {"rate": 1, "burst": 4}}')
    monkeypatch.setenv("ASTRA_UPSTREAM__ROUTE_TIMEOUTS", '{"POST /api/v1/trading/orders": 3}')
    order = PublicRoutes.of(GatewaySettings()).route("POST", "/api/v1/trading/orders", "trading")
    assert order is not None
    assert (order.policy, order.rule, order.timeout) == ("bulk", RateLimitRule(rate=1, burst=4), 3)


async def _metric_samples(
    http: aiohttp.ClientSession, base: str, name: str
) -> list[dict[str, str]]:
    async with http.get(f"{base}/metrics") as response:
        text = await response.text()
    return [
        sample.labels
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


@pytest.mark.integration
async def test_request_metrics_carry_the_routes_slo_class(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    await upstreams("users", "users-1")
    await upstreams("trading", "trading-1")
    async with gateway_at(redis_url) as base:

        async def routed() -> bool:
            async with http.get(f"{base}/api/v1/trading/markets") as response:
                return response.status == 200

        await poll_until(routed, "trading routed", 5)
        for method, path in (
            ("POST", "/api/v1/users/login"),
            ("POST", "/api/v1/trading/orders"),
            ("GET", "/api/v1/trading/orders/0190abcd"),
            ("POST", "/api/v1/trading/elsewhere"),
        ):
            async with http.request(method, f"{base}{path}", json={}) as response:
                assert response.status == 200, path
        async with http.get(f"{base}/health/live") as response:
            assert response.status == 200
        samples = await _metric_samples(http, base, "astra_http_server_requests_total")
        classes = {(s["method"], s["route"]): s["slo_class"] for s in samples}
        assert classes[("POST", "/api/v1/users/login")] == "auth"
        assert classes[("POST", "/api/v1/trading/orders")] == "write"
        assert classes[("GET", "/api/v1/trading/orders/{order_id}")] == "read"
        assert classes[("GET", "/api/v1/trading/markets")] == "read"
        assert classes[("POST", "/api/v1/trading/{path}")] == "write"
        assert classes[("GET", "/health/live")] == "none"
        durations = await _metric_samples(
            http, base, "astra_http_server_request_duration_seconds_count"
        )
        assert {"method": "POST", "route": "/api/v1/trading/orders", "slo_class": "write"} in [
            {k: v for k, v in s.items() if k in ("method", "route", "slo_class")} for s in durations
        ]


@pytest.mark.integration
async def test_only_a_write_declared_idempotent_is_retried_and_only_with_a_key(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    live = await upstreams("trading", "trading-1")
    dead = await upstreams("trading", "trading-2")
    async with gateway_at(
        redis_url,
        services=("trading",),
        # Keep the dead instance in the pool and every retry affordable: each request
        # then has an even chance of trying the dead one first.
        upstream={"eject_after_failures": 10_000, "retry_budget_floor": 10_000},
        breaker={"min_requests": 10_000},
        rate_limit={"orders": {"rate": 1000, "burst": 1000}},
    ) as base:

        async def both_routed() -> bool:
            async with http.get(f"{base}/api/v1/trading/markets") as response:
                await response.read()
            return bool(live.seen and dead.seen)

        await poll_until(both_routed, "both instances routed", 5)
        await dead.kill()  # still registered: the gateway finds out by connecting

        async def statuses(path: str, headers: dict[str, str]) -> set[int]:
            found = set()
            for _ in range(24):  # P(never trying the dead one first) = 2**-24
                async with http.post(f"{base}{path}", json={}, headers=headers) as response:
                    found.add(response.status)
            return found

        key = {"Idempotency-Key": "k-1"}
        assert await statuses("/api/v1/trading/orders", key) == {200}  # retried
        assert 502 in await statuses("/api/v1/trading/orders", {})  # no key: never twice
        assert 502 in await statuses("/api/v1/trading/elsewhere", key)  # not declared so


@pytest.mark.integration
async def test_server_error_series_exist_before_the_first_error(
    redis_url: str, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    """`rate()` cannot count what a series held when it appeared, so the 5xx series of
    every declared route are there, at zero, before any error (an outage's first errors
    would otherwise be missing from the availability SLO's windows)."""
    async with gateway_at(redis_url) as base, http.get(f"{base}/metrics") as response:
        text = await response.text()
    zero = {
        (s.labels["method"], s.labels["route"], s.labels["status"], s.labels["slo_class"])
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "astra_http_server_requests_total" and s.value == 0
    }
    for spec in PublicRoutes.of(
        GatewaySettings(registry={"token": TEST_REGISTRY_TOKEN}, operator_token=TEST_OPERATOR_TOKEN)
    ).all():
        for status in ("500", "502", "503", "504"):
            assert (spec.method, spec.template, status, spec.slo_class) in zero, spec.template
