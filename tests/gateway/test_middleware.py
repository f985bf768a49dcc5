"""CORS, security headers and the access log line, through a real gateway and upstream."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import aiohttp
import pytest
from opentelemetry.sdk.trace import TracerProvider

from backbone.telemetry.logs import JsonFormatter
from gateway.middleware.security import CSP
from tests.gateway.conftest import GatewayAt, UpstreamFactory, until_routed
from tests.support.settings import TEST_OPERATOR_TOKEN, TEST_REGISTRY_TOKEN

pytestmark = pytest.mark.integration

APP = "https://app.example"


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("gateway", "gateway-test"))
    logger = logging.getLogger("astra.access")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_cors_preflight_is_answered_by_the_gateway(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    users = await upstreams("users", "users-1")
    async with gateway_at(redis_url, cors_origins=(APP,)) as base:
        await until_routed(http, f"{base}/api/v1/users/ping")
        users.seen.clear()
        preflight = {
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        }
        async with http.options(f"{base}/api/v1/users/login", headers=preflight) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == APP
            assert response.headers["Access-Control-Allow-Credentials"] == "true"
            assert "POST" in response.headers["Access-Control-Allow-Methods"]
            assert response.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
            assert "Origin" in response.headers.getall("Vary")
        assert users.seen == []  # never reached the service

        refused = [
            {**preflight, "Origin": "https://evil.example"},
            {**preflight, "Access-Control-Request-Headers": "X-User-ID"},
            {**preflight, "Access-Control-Request-Method": "TRACE"},
        ]
        for headers in refused:
            async with http.options(f"{base}/api/v1/users/login", headers=headers) as response:
                assert response.status == 403, headers
                assert "Access-Control-Allow-Origin" not in response.headers
                assert response.content_type == "application/problem+json"

        async with http.get(f"{base}/api/v1/users/x", headers={"Origin": APP}) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == APP
            assert "x-correlation-id" in response.headers["Access-Control-Expose-Headers"]
        headers = {"Origin": "https://evil.example"}
        async with http.get(f"{base}/api/v1/users/x", headers=headers) as response:
            assert response.status == 200
            assert "Access-Control-Allow-Origin" not in response.headers


def test_wildcard_origin_with_credentials_is_refused() -> None:
    from gateway.config import GatewaySettings

    with pytest.raises(ValueError, match="'\\*'"):
        GatewaySettings(
            cors_origins=("*",),
            cors_allow_credentials=True,
            registry={"token": TEST_REGISTRY_TOKEN},
            operator_token=TEST_OPERATOR_TOKEN,
        )


async def test_security_headers_and_no_store(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    await upstreams("users", "users-1")
    async with gateway_at(redis_url) as base:
        await until_routed(http, f"{base}/api/v1/users/ping")
        for url, cache in (
            (f"{base}/api/v1/users/x", "no-store"),
            (f"{base}/api/v1/users/x?cache=private,max-age=60", "no-store"),
            (f"{base}/api/v1/users/x?cache=public,max-age=5", "public,max-age=5"),
            (f"{base}/api/v1/nope", "no-store"),  # the gateway's own 404
        ):
            async with http.get(url) as response:
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert response.headers["X-Frame-Options"] == "DENY"
                assert response.headers["Referrer-Policy"] == "no-referrer"
                assert response.headers["Content-Security-Policy"] == CSP
                assert response.headers.getall("Cache-Control") == [cache], url
        async with http.get(f"{base}/health/live") as response:
            assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_access_log_line_names_route_upstream_and_ids(
    redis_url: str,
    upstreams: UpstreamFactory,
    gateway_at: GatewayAt,
    http: aiohttp.ClientSession,
    access_lines: io.StringIO,
) -> None:
    await upstreams("users", "users-1")
    tracer = TracerProvider().get_tracer("test")
    async with gateway_at(redis_url, tracer=tracer) as base:
        await until_routed(http, f"{base}/api/v1/users/ping")
        headers = {"X-Correlation-ID": "cid-access-1"}
        async with http.get(f"{base}/api/v1/users/me", headers=headers) as response:
            assert response.status == 200
    lines = [json.loads(line) for line in access_lines.getvalue().splitlines()]
    line = next(x for x in lines if x.get("correlation_id") == "cid-access-1")
    assert line["method"] == "GET"
    assert line["route"].startswith("/api/v1/users/")
    assert line["status"] == 200
    assert line["duration_ms"] > 0
    assert line["upstream_instance"] == "users-1"
    assert len(line["trace_id"]) == 32
