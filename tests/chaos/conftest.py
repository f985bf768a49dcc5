"""Fixtures for fault proxy tests: the server in-process on port 0, upstreams on port 0.

Everything a fixture opens it closes: servers, client sessions and every connection
made through `connect`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from chaos.client import Proxy, ToxiproxyClient
from chaos.faultproxy import FaultProxyServer, FaultProxySettings

SEED = 20240601
T = TypeVar("T")


@dataclass
class Upstream:
    """A TCP server on 127.0.0.1:0 that records when each piece of data arrived."""

    server: asyncio.Server
    arrivals: asyncio.Queue[tuple[float, bytes]] = field(default_factory=asyncio.Queue)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def aclose(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        for writer in self.writers:
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
        await self.server.wait_closed()


Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Upstream], Awaitable[None]]


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: Upstream) -> None:
    """Send back what arrives, noting the arrival time."""
    while data := await reader.read(65536):
        up.arrivals.put_nowait((time.perf_counter(), data))
        writer.write(data)
        await writer.drain()


async def start_upstream(behaviour: Behaviour = echo) -> Upstream:
    holder: list[Upstream] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up = holder[0]
        up.writers.append(writer)
        try:
            await behaviour(reader, writer, up)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    holder.append(Upstream(server))
    return holder[0]


@pytest.fixture
async def upstream_factory() -> AsyncIterator[Callable[..., Awaitable[Upstream]]]:
    made: list[Upstream] = []

    async def make(behaviour: Behaviour = echo) -> Upstream:
        up = await start_upstream(behaviour)
        made.append(up)
        return up

    yield make
    for up in made:
        await up.aclose()


@pytest.fixture
async def echo_upstream(upstream_factory: Callable[..., Awaitable[Upstream]]) -> Upstream:
    return await upstream_factory()


@pytest.fixture
async def faultproxy() -> AsyncIterator[FaultProxyServer]:
    settings = FaultProxySettings(host="127.0.0.1", port=0, seed=SEED)
    async with FaultProxyServer(settings, registry=CollectorRegistry()) as server:
        yield server


@pytest.fixture
async def toxiproxy(faultproxy: FaultProxyServer) -> AsyncIterator[ToxiproxyClient]:
    async with ToxiproxyClient(faultproxy.url, timeout=5.0) as client:
        yield client


@pytest.fixture
async def http(faultproxy: FaultProxyServer) -> AsyncIterator[aiohttp.ClientSession]:
    """Raw HTTP to the API (paths relative to it)."""
    timeout = aiohttp.ClientTimeout(total=5.0)
    async with aiohttp.ClientSession(faultproxy.url, timeout=timeout) as session:
        yield session


@pytest.fixture
async def echo_proxy(toxiproxy: ToxiproxyClient, echo_upstream: Upstream) -> Proxy:
    return await toxiproxy.create_proxy("echo", upstream=echo_upstream.address)


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[Proxy], Awaitable[Conn]]]:
    """Open a connection through a proxy; closed after the test."""
    writers: list[asyncio.StreamWriter] = []

    async def open_(proxy: Proxy) -> Conn:
        host, port = proxy.address
        reader, writer = await asyncio.open_connection(host, port)
        writers.append(writer)
        return reader, writer

    yield open_
    for writer in writers:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def round_trip(conn: Conn, payload: bytes = b"ping", *, limit: float = 5.0) -> float:
    """Seconds for `payload` to come back through an echo upstream."""
    reader, writer = conn
    start = time.perf_counter()
    writer.write(payload)
    got = await asyncio.wait_for(reader.readexactly(len(payload)), limit)
    assert got == payload
    return time.perf_counter() - start


async def read_until_closed(reader: asyncio.StreamReader, *, limit: float = 5.0) -> bytes:
    """Everything until EOF (raises on reset or after `limit` seconds)."""
    return await asyncio.wait_for(reader.read(-1), limit)


class ThreadedFaultProxy:
    """The server on its own loop in a thread, for blocking clients (toxiproxy-python)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server: FaultProxyServer | None = None
        self.echo: Upstream | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedFaultProxy:
        self._thread.start()
        self.server, self.echo = self._run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _start(self) -> tuple[FaultProxyServer, Upstream]:
        settings = FaultProxySettings(host="127.0.0.1", port=0, seed=SEED)
        server = await FaultProxyServer(settings, registry=CollectorRegistry()).start()
        return server, await start_upstream()

    async def _stop(self) -> None:
        assert self.server is not None
        assert self.echo is not None
        await self.server.aclose()
        await self.echo.aclose()


@pytest.fixture
def threaded_faultproxy() -> Iterator[ThreadedFaultProxy]:
    with ThreadedFaultProxy() as server:
        yield server
