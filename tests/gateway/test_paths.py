"""One canonical path per request at the edge, and no internal address in an answer.

`/x/` and `/x//y` are `/x` and `/x/y` for every decision (rate-limit policy, public
rule, audit action) and on the wire to the service; dot segments and encoded
separators are refused; services never redirect; a `Location` naming an instance
reaches the client as a gateway-relative path.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry

from backbone.registry import InstanceInfo, Registrar
from gateway.config import GatewaySettings
from gateway.public_api import PublicRoutes, canonical_path
from stack.netutil import free_port
from tests.gateway.conftest import FAST_REGISTRY, GatewayAt, Upstream, UpstreamFactory, until_routed
from tests.gateway.users_service import PASSWORD, users_service
from tests.support.poll import poll_until

OPERATOR = {"Authorization": "Bearer operator-token-for-tests"}


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        (b"/api/v1/users/login", "/api/v1/users/login"),
        (b"/api/v1/users/login/", "/api/v1/users/login"),
        (b"/api/v1/users/login///", "/api/v1/users/login"),
        (b"/api/v1//users//login", "/api/v1/users/login"),
        (b"//api/v1/users/login", None),  # `//host/...` to a URL parser
        (b"/api/v1/users/logi%6E", "/api/v1/users/login"),  # decoded as uvicorn does
        (b"/", "/"),
        (b"/api/v1/x/../users/login", None),
        (b"/api/v1/users/./login", None),
        (b"/api/v1/users/%2e%2E/trading", None),
        (b"/api/v1/users%2Flogin", None),
        (b"/api/v1/users%5clogin", None),
    ],
)
def test_canonical_path(raw: bytes, canonical: str | None) -> None:
    result = canonical_path(raw)
    assert (result[0] if result else None) == canonical
    if result is not None:  # the encoded form keeps the client's escapes, minus empty segments
        assert b"//" not in result[1]
        assert result[1] == b"/" or not result[1].endswith(b"/")


def test_declarations_carry_policy_and_audit_action() -> None:
    routes = PublicRoutes()
    login = routes.route("POST", "/api/v1/users/login", "users")
    order = routes.route("POST", "/api/v1/trading/orders", "trading")
    assert login is not None
    assert (login.policy, login.audit) == ("auth", "login")
    assert order is not None
    assert (order.policy, order.audit) == ("orders", "order")
    markets = routes.route("GET", "/api/v1/trading/markets", "trading")
    assert markets is not None
    assert (markets.policy, markets.audit) == ("default", None)


async def _raw_get(base: str, target: str) -> tuple[int, dict[str, str], bytes]:
    """One request with `target` exactly as written (aiohttp would remove dot segments)."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.integration
async def test_paths_are_canonical_before_anything_is_decided_or_forwarded(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    trading = await upstreams("trading", "trading-1")
    async with gateway_at(redis_url, services=("trading",)) as base:
        await until_routed(http, f"{base}/api/v1/trading/markets")
        status, headers, body = await _raw_get(base, "/api/v1//trading//markets/?x=1")
        assert status == 200
        assert json.loads(body)["path"] == "/api/v1/trading/markets?x=1"  # what the service saw
        assert trading.seen[-1]["path"] == "/api/v1/trading/markets?x=1"
        seen = len(trading.seen)
        for target in (
            "/api/v1/trading/x/../markets",
            "/api/v1/trading/%2e%2e/users/login",
            "/api/v1/trading%2Fmarkets",
            "//api/v1/trading/markets",
        ):
            status, headers, body = await _raw_get(base, target)
            assert status == 400, target
            assert headers["content-type"] == "application/problem+json"
        assert len(trading.seen) == seen  # none of them was forwarded
        # The gateway's own routes: canonical too, and never a redirect.
        status, _, _ = await _raw_get(base, "/health/live/")
        assert status == 200
        status, headers, _ = await _raw_get(base, "/no/such/route/")
        assert status == 404
        assert "location" not in headers


@pytest.mark.integration
async def test_a_trailing_slash_login_is_limited_and_audited_as_login(
    redis_url: str, tmp_path: Path, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    async with (
        users_service(redis_url, tmp_path) as users_url,
        gateway_at(
            redis_url,
            services=("users",),
            public_routes=GatewaySettings.model_fields["public_routes"].default,
            operator_token="operator-token-for-tests",
            # The stack's auth burst, without refill during the test: deterministic counts.
            rate_limit={"auth": {"rate": 0.0001, "burst": 5}},
        ) as base,
    ):
        await until_routed(http, f"{base}/health/ready")
        registration = {"username": "dave_04", "email": "d@example.com", "password": PASSWORD}
        async with http.post(
            f"{base}/api/v1/users/register/", json=registration, allow_redirects=False
        ) as response:  # forwarded as /register: the service itself answers /register/ 404
            assert response.status == 201, await response.text()
        statuses = []
        for _ in range(20):
            async with http.post(
                f"{base}/api/v1/users/login/",
                json={"username": "dave_04", "password": "wrong-password"},
                allow_redirects=False,
            ) as response:
                statuses.append(response.status)
                assert response.headers["RateLimit-Limit"] == "5"  # the auth rule, not default
                assert "Location" not in response.headers
        assert statuses == [401] * 4 + [429] * 16  # the burst of 5, one spent registering
        async with http.post(
            f"{base}/api/v1/users/login", json={"username": "dave_04", "password": PASSWORD}
        ) as response:
            assert response.status == 429  # one budget for /login/ and /login

        async def logins() -> list[dict[str, Any]] | None:
            async with http.get(f"{base}/api/v1/audit", headers=OPERATOR) as response:
                items = (await response.json())["items"]
            found = [e for e in items if e["action"] == "login"]
            return found if len(found) == 4 else None

        entries = await poll_until(logins, "the four answered logins in the trail", 5) or []
        for entry in entries:
            assert entry["route"] == "/api/v1/users/login"
            assert (entry["status"], entry["attempted_username"]) == (401, "dave_04")
        # The service no longer redirects: nothing to follow around the gateway.
        async with http.post(
            f"{users_url}/api/v1/users/login/",
            json={"username": "dave_04", "password": "wrong-password"},
            allow_redirects=False,
        ) as response:
            assert response.status == 404
            assert "Location" not in response.headers


@pytest.mark.integration
async def test_a_service_app_answers_404_not_307_for_a_trailing_slash(
    redis_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with users_service(redis_url, tmp_path) as users_url:
        for method, path in (
            ("POST", "/api/v1/users/register/"),
            ("GET", "/api/v1/users/me/"),
            ("GET", "/health/live/"),
        ):
            async with http.request(
                method, f"{users_url}{path}", json={}, allow_redirects=False
            ) as response:
                assert response.status == 404, path
                assert "Location" not in response.headers
        async with http.get(f"{users_url}/health/live") as response:
            assert response.status == 200  # the canonical path is served


class _Redirecting(Upstream):
    """Answers with the status and `Location` (and `Content-Location`) it is told."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        headers = {"Location": request.query["to"]}
        if "content" in request.query:
            headers["Content-Location"] = request.query["content"]
        return web.Response(status=int(request.query.get("status", "302")), headers=headers)


async def _register(
    stack: AsyncExitStack, redis: aioredis.Redis, service: str, name: str, url: str
) -> None:
    registrar = Registrar(
        redis,
        InstanceInfo(service=service, instance_id=name, url=url, version="1", status="ready"),
        FAST_REGISTRY,
        registry=CollectorRegistry(),
    )
    await registrar.start()
    stack.push_async_callback(registrar.aclose)


@pytest.mark.integration
async def test_an_internal_location_reaches_the_client_gateway_relative(
    redis_url: str, gateway_at: GatewayAt, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    stack.push_async_callback(redis.aclose)
    users = _Redirecting("users", "users-1", free_port())
    await users.start()
    stack.push_async_callback(users.kill)
    await _register(stack, redis, "users", "users-1", users.url)
    # Known to the registry, never asked here: its address must not leak either.
    await _register(stack, redis, "trading", "trading-9", "http://127.0.0.9:8102")
    base = await stack.enter_async_context(gateway_at(redis_url))
    own = f"http://127.0.0.1:{users.port}"
    cases = {
        f"{own}/api/v1/users/me?tab=1": "/api/v1/users/me?tab=1",
        f"{own}": "/",
        "http://127.0.0.9:8102/api/v1/trading/orders/7": "/api/v1/trading/orders/7",
        f"http://127.0.0.1:{free_port()}/api/v1/x": "/api/v1/x",  # another port, same host
        f"{own}//evil.example/x": "/evil.example/x",  # never a scheme-relative URL
        "/api/v1/users/login": "/api/v1/users/login",  # already relative
        "https://example.org/elsewhere": "https://example.org/elsewhere",  # another site
    }

    async def routed() -> bool:
        async with http.get(
            f"{base}/api/v1/users/go", params={"to": "/"}, allow_redirects=False
        ) as response:
            return response.status == 302

    await poll_until(routed, "users routed", 5)
    for location, expected in cases.items():
        async with http.get(
            f"{base}/api/v1/users/go", params={"to": location}, allow_redirects=False
        ) as response:
            assert response.status == 302
            assert response.headers["Location"] == expected, location
    async with http.post(
        f"{base}/api/v1/users/things",
        params={"to": f"{own}/api/v1/users/things/1", "content": f"{own}/api/v1/users/things/1"},
        allow_redirects=False,
        data=b"",
    ) as response:
        assert response.headers["Location"] == "/api/v1/users/things/1"
        assert response.headers["Content-Location"] == "/api/v1/users/things/1"
