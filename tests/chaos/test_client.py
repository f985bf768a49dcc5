"""chaos.client: the typed async client drills use (only the documented API)."""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable

import pytest

from chaos.client import BadRequest, Conflict, NotFound, Proxy, Toxic, ToxiproxyClient
from chaos.faultproxy import VERSION
from tests.chaos.conftest import Conn, Upstream, round_trip

pytestmark = pytest.mark.chaos

Connect = Callable[[Proxy], Awaitable[Conn]]


async def test_version_and_wait_ready(toxiproxy: ToxiproxyClient) -> None:
    assert await toxiproxy.wait_ready(within=2) == VERSION
    assert await toxiproxy.version() == VERSION


async def test_wait_ready_gives_up() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    async with ToxiproxyClient(url, timeout=0.5) as client:
        start = time.perf_counter()
        with pytest.raises(TimeoutError):
            await client.wait_ready(within=0.3)
        assert time.perf_counter() - start < 2


async def test_toxic_context_manager_applies_then_removes(
    echo_proxy: Proxy, connect: Connect
) -> None:
    conn = await connect(echo_proxy)
    async with echo_proxy.toxic("latency", latency=200, jitter=0) as toxic:
        assert toxic == Toxic(
            name="latency_downstream",
            type="latency",
            stream="downstream",
            toxicity=1.0,
            attributes={"latency": 200, "jitter": 0},
        )
        assert await round_trip(conn) >= 0.2
        assert [t.name for t in await echo_proxy.list_toxics()] == ["latency_downstream"]
    assert await echo_proxy.list_toxics() == []
    assert await round_trip(conn) < 0.15


async def test_toxic_context_manager_cleans_up_on_error(echo_proxy: Proxy) -> None:
    with pytest.raises(RuntimeError):
        async with echo_proxy.toxic("timeout", stream="upstream", timeout=0):
            raise RuntimeError("drill failed")
    assert await echo_proxy.list_toxics() == []


async def test_toxic_context_manager_tolerates_reset_inside(
    toxiproxy: ToxiproxyClient, echo_proxy: Proxy
) -> None:
    async with echo_proxy.toxic("bandwidth", rate=10):
        await toxiproxy.reset()
    assert await echo_proxy.list_toxics() == []


async def test_down_context_manager(echo_proxy: Proxy, connect: Connect) -> None:
    async with echo_proxy.down() as proxy:
        assert proxy.enabled is False
        with pytest.raises(ConnectionRefusedError):
            await connect(echo_proxy)
    assert echo_proxy.enabled is True
    assert await round_trip(await connect(echo_proxy)) < 1.0


async def test_update_get_and_remove_toxic(echo_proxy: Proxy) -> None:
    await echo_proxy.add_toxic("slicer", name="chop", average_size=64, size_variation=8)
    updated = await echo_proxy.update_toxic("chop", toxicity=0.5, delay=100)
    assert updated.toxicity == 0.5
    assert updated.attributes == {"average_size": 64, "size_variation": 8, "delay": 100}
    assert await echo_proxy.get_toxic("chop") == updated
    await echo_proxy.remove_toxic("chop")
    with pytest.raises(NotFound) as caught:
        await echo_proxy.get_toxic("chop")
    assert caught.value.status == 404
    assert caught.value.message == "toxic not found"


async def test_errors_are_typed(toxiproxy: ToxiproxyClient, echo_proxy: Proxy) -> None:
    with pytest.raises(Conflict):
        await toxiproxy.create_proxy("echo", upstream=echo_proxy.upstream)
    with pytest.raises(BadRequest, match="invalid toxic type"):
        await echo_proxy.add_toxic("gremlins")
    with pytest.raises(NotFound, match="proxy not found"):
        await toxiproxy.get_proxy("nope")


async def test_proxies_populate_refresh_and_delete(
    toxiproxy: ToxiproxyClient, echo_upstream: Upstream
) -> None:
    made = await toxiproxy.populate(
        [
            {"name": "a", "listen": "127.0.0.1:0", "upstream": echo_upstream.address},
            {"name": "b", "listen": "127.0.0.1:0", "upstream": echo_upstream.address},
        ]
    )
    assert [p.name for p in made] == ["a", "b"]
    assert set(await toxiproxy.proxies()) == {"a", "b"}
    a = made[0]
    await (await toxiproxy.get_proxy("a")).disable()
    assert (await a.refresh()).enabled is False
    await a.delete()
    assert set(await toxiproxy.proxies()) == {"b"}
