"""Breaker and stale-cache fallback through a real gateway."""

from __future__ import annotations

import aiohttp
import pytest

from gateway.config import FallbackSettings
from gateway.fallback import StaleCache, cacheable_answer, cacheable_request
from tests.gateway.conftest import GatewayAt, UpstreamFactory, until_routed
from tests.support.poll import poll_until

BREAKER = {"min_requests": 4, "failure_rate": 0.5, "cooldown_seconds": 0.5, "half_open_probes": 1}


def test_only_anonymous_gets_and_shareable_answers_are_cached() -> None:
    assert cacheable_request("GET", [(b"accept", b"*/*")])
    assert not cacheable_request("GET", [(b"authorization", b"Bearer t")])
    assert not cacheable_request("GET", [(b"cookie", b"s=1")])
    assert not cacheable_request("POST", [])
    assert cacheable_answer(200, [(b"content-type", b"application/json")])
    assert not cacheable_answer(200, [(b"set-cookie", b"s=1")])
    assert not cacheable_answer(200, [(b"cache-control", b"private, max-age=0")])
    assert not cacheable_answer(201, [])


def test_stale_entries_expire_and_the_cache_is_bounded() -> None:
    now = [0.0]
    cache = StaleCache(FallbackSettings(stale_seconds=10, max_entries=2), clock=lambda: now[0])
    for key in ("a", "b", "c"):
        cache.store(key, [], key.encode())
    assert cache.lookup("a") is None  # evicted, least recently stored
    now[0] = 4
    hit = cache.lookup("c")
    assert hit is not None
    assert hit[1] == 4
    now[0] = 11
    assert cache.lookup("c") is None


@pytest.mark.integration
async def test_breaker_opens_serves_stale_reads_refuses_writes_then_closes(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    users = await upstreams("users", "users-1")
    async with gateway_at(redis_url, breaker=BREAKER) as base:
        url = f"{base}/api/v1/users/profiles/top"
        await until_routed(http, url)
        users.mode = "fail"
        for _ in range(4):
            async with http.get(url) as response:
                assert response.status == 200
                assert response.headers["X-Astra-Fallback"] == "stale-cache"
                assert response.headers["Age"].isdigit()
                assert (await response.json())["instance"] == "users-1"
        async with http.get(f"{base}/api/v1/users/never-seen") as response:
            assert response.status == 503  # open, and nothing cached for it
            assert response.headers["Retry-After"] == "1"
        async with http.post(url) as response:
            assert response.status == 503
            assert response.content_type == "application/problem+json"
            assert response.headers["Retry-After"].isdigit()
            doc = await response.json(content_type=None)
            assert doc["service"] == "users"

        users.mode = "ok"

        async def closed() -> bool:
            async with http.get(url) as response:
                await response.read()
                return "X-Astra-Fallback" not in response.headers

        await poll_until(closed, "breaker closed again", timeout=5)
        async with http.get(f"{base}/metrics") as response:
            text = await response.text()
        for to in ("open", "half_open", "closed"):
            assert f'astra_gateway_breaker_transitions_total{{service="users",to="{to}"}}' in text
        assert 'astra_gateway_fallbacks_total{kind="stale_cache",service="users"}' in text
        assert 'astra_gateway_breaker_state{service="users"} 0.0' in text
