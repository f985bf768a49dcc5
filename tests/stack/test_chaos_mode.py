"""Chaos mode (`astra up --chaos`): the proxy topology, and a real stack whose every hop
crosses the fault proxy while Prometheus still scrapes each instance directly."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from chaos.client import ToxiproxyClient
from stack.chaos import (
    COMMITTED,
    COMPOSE_COMMITTED,
    ChaosConfigError,
    ProxySpec,
    compose_specs,
    config_text,
    default_specs,
    proxies_for,
    toxiproxy_config,
    via,
)
from stack.config import StackSettings
from tests.support.poll import poll_until
from tests.support.stack import Stack, running_stack


def settings(**values: Any) -> StackSettings:
    return StackSettings(**{"redis_url": "", "database_url": "", "gateway_replicas": 1, **values})


def test_names_and_ports_follow_instances_and_offset() -> None:
    two_trading = {"trading": 2}
    specs = proxies_for(
        settings(port_offset=100, gateway_replicas=2), lambda s: two_trading.get(s, 1)
    )
    by_name = {s.name: s for s in specs}
    assert by_name["gateway_trading-1"] == ProxySpec(
        "gateway_trading-1", "127.0.0.1:18202", "127.0.0.1:8202"
    )
    assert by_name["gateway_trading-2"].listen == "127.0.0.1:18212"
    assert by_name["gateway_trading-2"].upstream == "127.0.0.1:8212"
    assert by_name["trading-2_redis"] == ProxySpec(
        "trading-2_redis", "127.0.0.1:16212", "127.0.0.1:6490"
    )
    assert by_name["gateway-1_redis"].listen == "127.0.0.1:16100"
    assert by_name["gateway-2_redis"].listen == "127.0.0.1:16101"
    assert not any(name.endswith("_postgres") for name in by_name)  # SQLite: no hop
    # every instance has its two proxies, every gateway replica its Redis one
    assert len(specs) == 2 * 6 + 2
    assert len({s.listen for s in specs}) == len(specs)


def test_postgres_hops_only_with_a_postgres_url() -> None:
    url = "postgresql+asyncpg://astra:pw@db.internal:5433/astra"
    specs = {s.name: s for s in proxies_for(settings(database_url=url), lambda _: 1)}
    assert specs["trading-1_postgres"] == ProxySpec(
        "trading-1_postgres", "127.0.0.1:17102", "db.internal:5433"
    )
    assert via(url, specs["trading-1_postgres"].listen) == (
        "postgresql+asyncpg://astra:pw@127.0.0.1:17102/astra"
    )
    sqlite = settings(database_url="sqlite+aiosqlite:///var/data/x.db")
    assert not [s for s in proxies_for(sqlite, lambda _: 1) if s.name.endswith("_postgres")]


def test_an_offset_past_the_last_port_is_refused() -> None:
    with pytest.raises(ChaosConfigError, match="above 65535"):
        proxies_for(settings(port_offset=48_000), lambda _: 1)


def test_toxiproxy_config_shape_and_the_committed_file_is_current() -> None:
    config = toxiproxy_config(default_specs())
    assert config[0] == {
        "name": "gateway_users-1",
        "listen": "127.0.0.1:18101",
        "upstream": "127.0.0.1:8101",
        "enabled": True,
    }
    assert all(set(p) == {"name", "listen", "upstream", "enabled"} for p in config)
    assert json.loads(COMMITTED.read_text()) == config
    assert COMMITTED.read_text() == config_text(default_specs()), (
        "chaos/proxies.json is stale: run `python -m stack.chaos generate`"
    )


def test_the_compose_topology_has_the_same_proxies_on_the_compose_network() -> None:
    # Same names and listen ports (drills name proxies; the drill runner is unchanged),
    # the compose services' addresses instead of 127.0.0.1 (compose/compose.chaos.yaml).
    local, compose = default_specs(), compose_specs()
    assert [(s.name, s.port) for s in compose] == [(s.name, s.port) for s in local]
    upstreams = {s.name: s.upstream for s in compose}
    assert upstreams["gateway_trading-1"] == "trading:8000"
    assert upstreams["trading-1_redis"] == upstreams["gateway-1_redis"] == "redis:6379"
    assert json.loads(COMPOSE_COMMITTED.read_text()) == toxiproxy_config(compose)


# -- a live stack in chaos mode ----------------------------------------------------------


@pytest.fixture(scope="module")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it: scripts/require.sh)")
    env = {
        "ASTRA_CHAOS": "true",
        # sd (the scrape targets) is all this test needs of monitoring; Prometheus and
        # the exporters start too when installed.
        "ASTRA_MONITORING": "true",
        # The latency test times the hop itself: no stale copy after 0.2 s in between.
        "ASTRA_FALLBACK__STALE_AFTER_SECONDS": "0",
    }
    with running_stack(tmp_path_factory.mktemp("chaos"), env) as stack:
        yield stack


async def targets(http: httpx.AsyncClient, stack: Stack) -> dict[str, str]:
    """sd's http_sd document: instance -> scrape address."""
    response = await http.get(f"{stack.url('sd')}/targets")
    assert response.status_code == 200
    return {g["labels"]["instance"]: g["targets"][0] for g in response.json()}


@pytest.mark.e2e
@pytest.mark.chaos
async def test_every_hop_is_proxied_and_an_order_crosses_them(chaos_stack: Stack) -> None:
    stack = chaos_stack
    chaos = stack.info["chaos"]
    assert stack.has("faultproxy")
    async with ToxiproxyClient(chaos["api"]) as toxiproxy:
        listed = await toxiproxy.proxies()
    expected = {f"gateway_{s}-1" for s in ("users", "trading", "gamification", "nft", "social")}
    expected |= {f"{s}-1_redis" for s in ("users", "trading", "gamification", "nft", "social")}
    expected |= {"gateway-1_redis"}
    assert set(listed) == expected == set(chaos["proxies"])
    for name, proxy in listed.items():
        assert proxy.enabled, name
        assert proxy.listen == chaos["proxies"][name]["listen"]

    name = f"chaos{random.randrange(10**6)}"
    password = "correct horse 1"
    async with httpx.AsyncClient(base_url=stack.url("gateway-1"), timeout=10) as http:
        created = await http.post(
            "/api/v1/users/register",
            json={"username": name, "email": f"{name}@example.com", "password": password},
        )
        assert created.status_code == 201, created.text
        login = await http.post(
            "/api/v1/users/login", json={"username": name, "password": password}
        )
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        markets = await http.get("/api/v1/trading/markets")
        assert markets.status_code == 200, markets.text
        order = await http.post(
            "/api/v1/trading/orders",
            json={"symbol": markets.json()[0]["symbol"], "side": "buy", "quantity": "1"},
            headers=auth,
        )
        assert order.status_code == 201, order.text
        # The gateway routes to the proxies the instances registered.
        view = (await http.get("/api/v1/services", headers=stack.operator_headers)).json()
        trading = view["services"]["trading"]["instances"]
        assert [i["url"] for i in trading] == [
            f"http://{chaos['proxies']['gateway_trading-1']['listen']}"
        ]


@pytest.mark.e2e
@pytest.mark.chaos
async def test_a_latency_toxic_slows_the_gateway_hop_until_removed(chaos_stack: Stack) -> None:
    stack = chaos_stack
    async with (
        ToxiproxyClient(stack.info["chaos"]["api"]) as toxiproxy,
        httpx.AsyncClient(base_url=stack.url("gateway-1"), timeout=10) as http,
    ):

        async def timed_markets() -> float:
            started = time.monotonic()
            response = await http.get("/api/v1/trading/markets")
            assert response.status_code == 200, response.text
            return time.monotonic() - started

        await timed_markets()  # a warm connection pool
        assert await timed_markets() < 0.3
        proxy = await toxiproxy.get_proxy("gateway_trading-1")
        async with proxy.toxic("latency", latency=300):
            assert await timed_markets() >= 0.3
            assert await timed_markets() >= 0.3
        assert not await proxy.list_toxics()

        async def fast_again() -> bool:
            return await timed_markets() < 0.3

        await poll_until(fast_again, "markets fast again without the toxic", timeout=5)


@pytest.mark.e2e
@pytest.mark.chaos
async def test_trading_redis_down_while_prometheus_scrapes_directly(chaos_stack: Stack) -> None:
    stack = chaos_stack
    if not stack.has("sd"):
        pytest.skip("monitoring is off: no sd process")
    direct = stack.url("trading-1")  # http://127.0.0.1:<port>
    proxied = stack.info["chaos"]["proxies"]["gateway_trading-1"]["listen"]
    async with (
        ToxiproxyClient(stack.info["chaos"]["api"]) as toxiproxy,
        httpx.AsyncClient(timeout=5) as http,
    ):

        async def scraped_directly() -> bool:
            return (await targets(http, stack)).get("trading-1") == direct.removeprefix("http://")

        await poll_until(scraped_directly, "sd to target trading-1's direct port", timeout=10)
        assert proxied not in (await targets(http, stack)).values()

        proxy = await toxiproxy.get_proxy("trading-1_redis")
        async with proxy.down():

            async def not_ready() -> Any:
                response = await http.get(f"{direct}/health/ready")
                return response.json() if response.status_code == 503 else None

            body = await poll_until(not_ready, "trading-1 not ready without Redis", timeout=10)
            assert "redis" in json.dumps(body)
            # The scrape target, while it lasts (the record expires one registry TTL after
            # the last heartbeat), is still the direct port, never the proxy.
            assert (await targets(http, stack)).get("trading-1") in (
                None,
                direct.removeprefix("http://"),
            )

        async def ready_again() -> bool:
            return (await http.get(f"{direct}/health/ready")).status_code == 200

        await poll_until(ready_again, "trading-1 ready again with Redis back", timeout=15)
        await poll_until(scraped_directly, "trading-1 back among the scrape targets", timeout=10)


@pytest.mark.e2e
@pytest.mark.chaos
def test_stack_json_chaos_block_names_every_proxy(chaos_stack: Stack) -> None:
    chaos = chaos_stack.info["chaos"]
    written = json.loads(Path(chaos_stack.run_dir / "chaos" / "proxies.json").read_text())
    assert {p["name"]: p["listen"] for p in written} == {
        n: p["listen"] for n, p in chaos["proxies"].items()
    }
    assert chaos["api"].startswith("http://127.0.0.1:")


@pytest.mark.e2e
@pytest.mark.chaos
async def test_a_killed_faultproxy_comes_back_with_every_proxy(chaos_stack: Stack) -> None:
    """Last in the module: the supervisor restarts it and `-config` re-creates the proxies."""
    stack = chaos_stack
    old = stack.pid("faultproxy")
    os.kill(old, signal.SIGKILL)
    async with ToxiproxyClient(stack.info["chaos"]["api"], timeout=1) as toxiproxy:

        async def restored() -> bool:
            stack.refresh()
            if stack.pid("faultproxy") == old:
                return False
            try:
                return set(await toxiproxy.proxies()) == set(stack.info["chaos"]["proxies"])
            except (aiohttp.ClientError, TimeoutError):
                return False

        await poll_until(restored, "the faultproxy restarted with its proxies", timeout=15)
    async with httpx.AsyncClient(base_url=stack.url("gateway-1"), timeout=5) as http:

        async def markets() -> bool:
            return (await http.get("/api/v1/trading/markets")).status_code == 200

        await poll_until(markets, "reads through the restarted proxies", timeout=10)
