"""Connections through a proxy: disable/enable/delete, toxicity per connection, the seed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client import CollectorRegistry

from chaos.client import Proxy, ToxiproxyClient
from chaos.faultproxy import FaultProxyServer, FaultProxySettings
from tests.chaos.conftest import Conn, Upstream, read_until_closed, round_trip
from tests.support.poll import poll_until

pytestmark = pytest.mark.chaos

Connect = Callable[[Proxy], Awaitable[Conn]]


async def _refused(proxy: Proxy) -> bool:
    try:
        _, writer = await asyncio.open_connection(*proxy.address)
    except ConnectionRefusedError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


async def test_disabling_drops_open_connections_and_refuses_new(
    faultproxy: FaultProxyServer, echo_proxy: Proxy, connect: Connect
) -> None:
    conns = [await connect(echo_proxy) for _ in range(3)]
    for conn in conns:
        await round_trip(conn)
    stats = faultproxy.metrics.stats_for("echo")
    assert stats.active_connections == 3

    await echo_proxy.disable()

    for reader, _ in conns:
        with contextlib.suppress(ConnectionResetError):  # dropped either way
            assert await read_until_closed(reader, limit=2) == b""
    assert await _refused(echo_proxy)

    async def none_open() -> bool:
        return stats.active_connections == 0

    await poll_until(none_open, "connections to be released")

    await echo_proxy.enable()
    assert await round_trip(await connect(echo_proxy)) < 1.0


async def test_deleting_a_proxy_drops_connections_and_frees_the_port(
    toxiproxy: ToxiproxyClient, echo_proxy: Proxy, connect: Connect, echo_upstream: Upstream
) -> None:
    reader, writer = await connect(echo_proxy)
    await round_trip((reader, writer))
    await echo_proxy.delete()
    assert await read_until_closed(reader, limit=2) == b""
    assert await _refused(echo_proxy)
    again = await toxiproxy.create_proxy("again", echo_upstream.address, echo_proxy.listen)
    assert again.listen == echo_proxy.listen
    assert await round_trip(await connect(again)) < 1.0


async def test_client_close_and_upstream_close_release_the_connection(
    faultproxy: FaultProxyServer, echo_proxy: Proxy, echo_upstream: Upstream, connect: Connect
) -> None:
    stats = faultproxy.metrics.stats_for("echo")
    reader, writer = await connect(echo_proxy)
    await round_trip((reader, writer))
    writer.close()

    async def released() -> bool:
        return stats.active_connections == 0

    await poll_until(released, "client close to release the connection")

    reader, writer = await connect(echo_proxy)
    await round_trip((reader, writer))
    for upstream_writer in echo_upstream.writers:
        upstream_writer.close()
    assert await read_until_closed(reader) == b""
    await poll_until(released, "upstream close to release the connection")


async def _affected(proxy: Proxy, connect: Connect) -> bool:
    """One connection: does limit_data(bytes=1) cut its echo short?"""
    reader, writer = await connect(proxy)
    writer.write(b"hello")
    got = await asyncio.wait_for(reader.read(5), 5)
    if got == b"h":
        return await read_until_closed(reader) == b""
    while len(got) < 5:
        got += await asyncio.wait_for(reader.read(5), 5)
    assert got == b"hello"
    writer.close()
    return False


async def test_toxicity_affects_that_share_of_connections(
    echo_proxy: Proxy, connect: Connect
) -> None:
    await echo_proxy.add_toxic("limit_data", toxicity=0.5, bytes=1)
    results: list[bool] = []
    for _ in range(4):  # 4 x 50 concurrent connections
        results += await asyncio.gather(*(_affected(echo_proxy, connect) for _ in range(50)))
    assert len(results) == 200
    assert 70 <= sum(results) <= 130  # 35-65 %


async def _pattern(seed: int, upstream: Upstream) -> list[bool]:
    settings = FaultProxySettings(host="127.0.0.1", port=0, seed=seed)
    async with (
        FaultProxyServer(settings, registry=CollectorRegistry()) as server,
        ToxiproxyClient(server.url) as client,
    ):
        proxy = await client.create_proxy("echo", upstream.address)
        await proxy.add_toxic("limit_data", toxicity=0.5, bytes=1)
        writers: list[asyncio.StreamWriter] = []

        async def connect(p: Proxy) -> Conn:
            conn = await asyncio.open_connection(*p.address)
            writers.append(conn[1])
            return conn

        try:
            return [await _affected(proxy, connect) for _ in range(30)]
        finally:
            for writer in writers:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()


async def test_seed_makes_toxicity_reproducible(echo_upstream: Upstream) -> None:
    first = await _pattern(7, echo_upstream)
    assert await _pattern(7, echo_upstream) == first
    assert await _pattern(8, echo_upstream) != first
    assert 0 < sum(first) < 30
