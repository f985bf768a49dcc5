"""Each toxic, measured on real sockets: what arrives, when, and how the connection ends.

Bounds are generous (the machine has 2 cores and other tests run) but each would fail
if the toxic did nothing or did the wrong thing.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import cast

import pytest

from chaos.client import Proxy, ToxiproxyClient
from chaos.faultproxy import Direction, FaultProxyServer
from chaos.faultproxy.toxics import LatencyToxic, SlicerToxic, Stub
from tests.chaos.conftest import Behaviour, Conn, Upstream, read_until_closed, round_trip
from tests.support.poll import poll_until

pytestmark = pytest.mark.chaos

Connect = Callable[[Proxy], Awaitable[Conn]]
Factory = Callable[..., Awaitable[Upstream]]


async def _send_and_time(conn: Conn, up: Upstream) -> tuple[float, float]:
    """(seconds until the upstream got it, seconds until it came back)."""
    reader, writer = conn
    start = time.perf_counter()
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
    back = time.perf_counter() - start
    arrived, data = await up.arrivals.get()
    assert data == b"ping"
    return arrived - start, back


async def test_latency_delays_downstream_only(
    echo_proxy: Proxy, echo_upstream: Upstream, connect: Connect
) -> None:
    conn = await connect(echo_proxy)
    async with echo_proxy.toxic("latency", latency=300):
        to_server, round_trip_s = await _send_and_time(conn, echo_upstream)
    assert to_server < 0.15  # the request was not held
    assert 0.3 <= round_trip_s < 0.6  # the reply was


async def test_latency_delays_upstream_only(
    echo_proxy: Proxy, echo_upstream: Upstream, connect: Connect
) -> None:
    conn = await connect(echo_proxy)
    async with echo_proxy.toxic("latency", stream="upstream", latency=300):
        to_server, round_trip_s = await _send_and_time(conn, echo_upstream)
    assert 0.3 <= to_server < 0.6
    assert round_trip_s - to_server < 0.15


async def test_latency_jitter_stays_in_bounds_and_varies(
    echo_proxy: Proxy, connect: Connect
) -> None:
    conn = await connect(echo_proxy)
    async with echo_proxy.toxic("latency", latency=100, jitter=60):
        samples = [await round_trip(conn) for _ in range(12)]
    assert min(samples) >= 0.04  # latency - jitter
    assert max(samples) < 0.16 + 0.15  # latency + jitter, plus slack for a busy machine
    assert max(samples) - min(samples) > 0.02  # jitter applied, not a constant delay


async def test_latency_burst_is_delayed_once_not_per_chunk(
    echo_proxy: Proxy, connect: Connect
) -> None:
    reader, writer = await connect(echo_proxy)
    async with echo_proxy.toxic("latency", latency=200):
        start = time.perf_counter()
        for i in range(10):
            writer.write(b"%02d" % i)
            await writer.drain()
            await asyncio.sleep(0)
        got = await asyncio.wait_for(reader.readexactly(20), 5)
        elapsed = time.perf_counter() - start
    assert got == b"".join(b"%02d" % i for i in range(10))  # order kept
    assert 0.2 <= elapsed < 0.5


def _blast(size: int) -> Behaviour:
    """An upstream that answers "go" with `size` bytes."""

    async def behaviour(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream
    ) -> None:
        await reader.readexactly(2)  # "go"
        writer.write(b"x" * size)
        await writer.drain()
        await reader.read()

    return behaviour


async def test_bandwidth_caps_throughput(
    toxiproxy: ToxiproxyClient, upstream_factory: Factory, connect: Connect
) -> None:
    size, rate = 250_000, 500  # bytes, KB/s: 0.5 s at the cap
    up = await upstream_factory(_blast(size))
    proxy = await toxiproxy.create_proxy("bulk", upstream=up.address)
    await proxy.add_toxic("bandwidth", rate=rate)
    reader, writer = await connect(proxy)

    start = time.perf_counter()
    writer.write(b"go")
    data = await asyncio.wait_for(reader.readexactly(size), 5)
    elapsed = time.perf_counter() - start

    expected = size / (rate * 1000)
    assert len(data) == size
    assert expected * 0.8 <= elapsed <= expected * 1.2


async def test_bandwidth_upstream_does_not_slow_downstream(
    toxiproxy: ToxiproxyClient, upstream_factory: Factory, connect: Connect
) -> None:
    size = 250_000
    up = await upstream_factory(_blast(size))
    proxy = await toxiproxy.create_proxy("bulk", upstream=up.address)
    await proxy.add_toxic("bandwidth", stream="upstream", rate=1)  # 1 KB/s for "go": ~2 ms
    reader, writer = await connect(proxy)
    start = time.perf_counter()
    writer.write(b"go")
    await asyncio.wait_for(reader.readexactly(size), 5)
    assert time.perf_counter() - start < 0.3


async def test_timeout_stops_data_and_closes_after_timeout(
    echo_proxy: Proxy, echo_upstream: Upstream, connect: Connect
) -> None:
    await echo_proxy.add_toxic("timeout", timeout=400)
    start = time.perf_counter()
    reader, writer = await connect(echo_proxy)
    writer.write(b"ping")
    assert await read_until_closed(reader) == b""  # nothing came back, then EOF
    elapsed = time.perf_counter() - start
    assert 0.38 <= elapsed < 0.9
    _, data = await echo_upstream.arrivals.get()
    assert data == b"ping"  # upstream direction unaffected


async def test_timeout_zero_holds_until_removed_then_closes(
    echo_proxy: Proxy, connect: Connect
) -> None:
    reader, writer = await connect(echo_proxy)
    await round_trip((reader, writer))
    await echo_proxy.add_toxic("timeout", timeout=0)
    writer.write(b"lost")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.3)  # held, not closed
    await echo_proxy.remove_toxic("timeout_downstream")
    assert await read_until_closed(reader) == b""  # data was dropped: the stream is closed


async def test_reset_peer_resets_the_client(echo_proxy: Proxy, connect: Connect) -> None:
    reader, writer = await connect(echo_proxy)
    await round_trip((reader, writer))
    await echo_proxy.add_toxic("reset_peer", timeout=0)
    writer.write(b"ping")
    with pytest.raises(ConnectionResetError):
        await read_until_closed(reader)


async def test_reset_peer_waits_for_its_timeout(echo_proxy: Proxy, connect: Connect) -> None:
    await echo_proxy.add_toxic("reset_peer", timeout=300)
    reader, writer = await connect(echo_proxy)
    start = time.perf_counter()
    writer.write(b"ping")
    with pytest.raises(ConnectionResetError):
        await read_until_closed(reader)
    assert 0.28 <= time.perf_counter() - start < 0.8


async def test_slicer_fragments_writes(
    toxiproxy: ToxiproxyClient, upstream_factory: Factory, connect: Connect
) -> None:
    size = 200
    up = await upstream_factory(_blast(size))
    proxy = await toxiproxy.create_proxy("sliced", upstream=up.address)
    await proxy.add_toxic("slicer", average_size=10, size_variation=4, delay=5000)
    reader, writer = await connect(proxy)

    writer.write(b"go")
    pieces: list[bytes] = []
    while sum(map(len, pieces)) < size:
        pieces.append(await asyncio.wait_for(reader.read(size), 5))

    assert b"".join(pieces) == b"x" * size
    assert len(pieces) >= 8  # ~20 slices 5 ms apart; a few may coalesce in the kernel
    assert max(map(len, pieces)) < size // 2


def test_seeded_jitter_is_reproducible() -> None:
    toxic = LatencyToxic(latency=100, jitter=50)

    def delays(seed: int) -> list[float]:
        stub = cast(Stub, SimpleNamespace(rng=random.Random(seed)))
        return [toxic.delay(stub) for _ in range(50)]

    first = delays(5)
    assert delays(5) == first
    assert delays(6) != first
    assert all(0.05 <= d < 0.15 for d in first)  # latency ± jitter
    assert len(set(first)) > 10


def test_slicer_bounds_follow_average_and_variation() -> None:
    toxic = SlicerToxic(average_size=100, size_variation=20)
    bounds = toxic.bounds(10_000, random.Random(1))
    sizes = [end - start for start, end in bounds]
    assert sum(sizes) == 10_000
    assert all(start < end for start, end in bounds)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert all(size <= 120 for size in sizes)
    assert 60 <= sum(sizes) / len(sizes) <= 120


async def test_limit_data_closes_after_n_bytes(
    toxiproxy: ToxiproxyClient, upstream_factory: Factory, connect: Connect
) -> None:
    up = await upstream_factory(_blast(300))
    proxy = await toxiproxy.create_proxy("limited", upstream=up.address)
    await proxy.add_toxic("limit_data", bytes=100)
    reader, writer = await connect(proxy)
    writer.write(b"go")
    assert await read_until_closed(reader) == b"x" * 100


async def test_slow_close_delays_only_the_close(
    toxiproxy: ToxiproxyClient, upstream_factory: Factory, connect: Connect
) -> None:
    async def say_bye(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream
    ) -> None:
        await reader.readexactly(2)
        writer.write(b"bye")
        await writer.drain()

    up = await upstream_factory(say_bye)
    proxy = await toxiproxy.create_proxy("closing", upstream=up.address)
    await proxy.add_toxic("slow_close", delay=300)
    reader, writer = await connect(proxy)
    start = time.perf_counter()
    writer.write(b"go")
    assert await asyncio.wait_for(reader.readexactly(3), 5) == b"bye"
    data_at = time.perf_counter() - start
    assert await read_until_closed(reader) == b""
    closed_at = time.perf_counter() - start
    assert data_at < 0.15
    assert 0.3 <= closed_at < 0.8


async def test_toxic_added_to_an_open_connection_takes_effect(
    echo_proxy: Proxy, connect: Connect
) -> None:
    conn = await connect(echo_proxy)
    assert await round_trip(conn) < 0.1
    async with echo_proxy.toxic("latency", latency=250):
        assert await round_trip(conn) >= 0.25
    assert await round_trip(conn) < 0.1  # and removing it restores the fast path


async def test_removing_a_toxic_releases_held_data_in_order(
    faultproxy: FaultProxyServer, echo_proxy: Proxy, connect: Connect
) -> None:
    reader, writer = await connect(echo_proxy)
    await echo_proxy.add_toxic("latency", latency=10_000)
    writer.write(b"first")
    stats = faultproxy.metrics.stats_for("echo")

    async def held() -> bool:  # the echo came back from upstream into the toxic
        return stats.received[Direction.DOWNSTREAM] >= 5

    await poll_until(held, "the reply to reach the latency toxic")
    start = time.perf_counter()
    await echo_proxy.remove_toxic("latency_downstream")
    writer.write(b"second")
    assert await asyncio.wait_for(reader.readexactly(11), 2) == b"firstsecond"
    assert time.perf_counter() - start < 1.0


async def test_updating_a_toxic_changes_open_connections(
    echo_proxy: Proxy, connect: Connect
) -> None:
    conn = await connect(echo_proxy)
    await echo_proxy.add_toxic("latency", latency=300)
    assert await round_trip(conn) >= 0.3
    await echo_proxy.update_toxic("latency_downstream", latency=0)
    assert await round_trip(conn) < 0.15


def _pattern_blast(size: int) -> Behaviour:
    """An upstream that answers "go" with `size` bytes of a repeating 0..250 pattern."""

    async def behaviour(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream
    ) -> None:
        await reader.readexactly(2)
        writer.write(_pattern(size))
        await writer.drain()
        await reader.read()

    return behaviour


def _pattern(size: int) -> bytes:
    return (bytes(range(251)) * (size // 251 + 1))[:size]


async def test_bulk_through_a_chain_of_toxics_keeps_every_byte_in_order(
    toxiproxy: ToxiproxyClient, upstream_factory: Factory, connect: Connect
) -> None:
    size = 4 << 20  # well past the link's high-water mark: flow control must engage
    up = await upstream_factory(_pattern_blast(size))
    proxy = await toxiproxy.create_proxy("chain", upstream=up.address)
    await proxy.add_toxic("latency", latency=50, jitter=10)
    await proxy.add_toxic("slicer", average_size=32_768, size_variation=8_192)
    reader, writer = await connect(proxy)
    start = time.perf_counter()
    writer.write(b"go")
    data = await asyncio.wait_for(reader.readexactly(size), 20)
    assert data == _pattern(size)
    assert time.perf_counter() - start >= 0.04


async def test_removing_a_toxic_mid_transfer_loses_nothing(
    faultproxy: FaultProxyServer, toxiproxy: ToxiproxyClient, upstream_factory: Factory,
    connect: Connect,
) -> None:  # fmt: skip
    size = 1 << 20
    up = await upstream_factory(_pattern_blast(size))
    proxy = await toxiproxy.create_proxy("throttled", upstream=up.address)
    await proxy.add_toxic("bandwidth", rate=200)  # 1 MB would take 5 s
    reader, writer = await connect(proxy)
    writer.write(b"go")
    first = await asyncio.wait_for(reader.readexactly(20_000), 5)  # part of it, slowly
    start = time.perf_counter()
    await proxy.remove_toxic("bandwidth_downstream")
    rest = await asyncio.wait_for(reader.readexactly(size - len(first)), 5)
    assert first + rest == _pattern(size)
    assert time.perf_counter() - start < 2.0
    stats = faultproxy.metrics.stats_for("throttled")
    assert stats.sent[Direction.DOWNSTREAM] == size


async def test_a_slow_toxic_pushes_back_on_the_sender(
    faultproxy: FaultProxyServer, toxiproxy: ToxiproxyClient, upstream_factory: Factory,
    connect: Connect,
) -> None:  # fmt: skip
    size = 32 << 20
    up = await upstream_factory(_pattern_blast(size))
    proxy = await toxiproxy.create_proxy("backpressure", upstream=up.address)
    await proxy.add_toxic("bandwidth", rate=100)
    _, writer = await connect(proxy)
    writer.write(b"go")
    stats = faultproxy.metrics.stats_for("backpressure")

    async def buffering() -> bool:
        return stats.received[Direction.DOWNSTREAM] >= 1 << 20

    await poll_until(buffering, "the proxy to read ahead of the toxic")
    # An observation window, not a synchronisation: without flow control the proxy
    # would read the whole 32 MB from loopback within it.
    await asyncio.sleep(0.3)
    assert stats.received[Direction.DOWNSTREAM] < 4 << 20
