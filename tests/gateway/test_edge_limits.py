"""Limits at the edge, against a real `python -m gateway` process over raw sockets.

The process matters: the limits are wired in `gateway/__main__.py` (uvicorn's
protocol), and the gateway's own memory is measured from /proc.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from stack.netutil import free_port
from tests.support.poll import poll_until
from tests.support.rawhttp import exchange
from tests.support.rawhttp import get as raw_get
from tests.support.settings import TEST_OPERATOR_TOKEN, TEST_REGISTRY_TOKEN

pytestmark = [pytest.mark.integration, pytest.mark.skipif(sys.platform != "linux", reason="/proc")]
ROOT = Path(__file__).resolve().parents[2]


class Edge:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def exchange(self, request: bytes, timeout: float = 10.0) -> bytes:
        """Send `request`, read until the gateway closes (bounded)."""
        return await exchange(self.port, request, timeout)


async def closed_without_answer(gw: Edge) -> bool:
    """Connect and wait: True when the gateway closes the connection without a byte.

    Nothing is sent, so the close is a clean FIN; a reset (the kernel's answer when
    a request was still unread) counts as closed too.
    """
    reader, writer = await gw.connect()
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        return True
    finally:
        writer.close()


async def request_on(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> tuple[int, bytes]:
    """One keep-alive GET on an open connection: (status, body)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(h.split(":")[1]) for h in lines if h.lower().startswith("content-length"))
    return int(lines[0].split()[1]), await asyncio.wait_for(reader.readexactly(length), 5)


EdgeAt = Callable[..., AbstractAsyncContextManager[Edge]]


@pytest.fixture
def edge(redis_url: str, tmp_path: Path) -> EdgeAt:
    @asynccontextmanager
    async def run(**env: str) -> AsyncIterator[Edge]:
        port = free_port()
        log = tmp_path / f"gateway-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway"],
                env={
                    **os.environ,
                    "PYTHONPATH": str(ROOT),
                    "ASTRA_GATEWAY_HOST": "127.0.0.1",
                    "ASTRA_GATEWAY_PORT": str(port),
                    "ASTRA_INSTANCE_ID": f"gateway-{port}",
                    "ASTRA_REDIS_URL": redis_url,
                    "ASTRA_RUN_DIR": str(tmp_path / "run"),
                    "ASTRA_SERVICES": '["trading"]',
                    "ASTRA_REGISTRY__TOKEN": TEST_REGISTRY_TOKEN,
                    "ASTRA_GATEWAY_OPERATOR_TOKEN": TEST_OPERATOR_TOKEN,
                    "ASTRA_TELEMETRY__LOG_STDERR": "false",
                    **env,
                },
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        gateway = Edge(process, port, log)
        try:

            async def live() -> bool:
                assert process.poll() is None, log.read_text()[-3000:]
                try:
                    answer = await gateway.exchange(
                        b"GET /health/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 2
                    )
                except OSError:
                    return False
                return answer.startswith(b"HTTP/1.1 200 ")

            await poll_until(live, "gateway live", timeout=30, interval=0.1)
            yield gateway
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    return run


def get(path: str = "/health/live", headers: bytes = b"") -> bytes:
    return raw_get(path, headers)


async def test_oversized_heads_are_refused_before_the_app_and_cost_no_memory(
    edge: EdgeAt,
) -> None:
    async with edge() as gw:
        huge = get(headers=b"X-Big: " + b"a" * (8 * 1024 * 1024) + b"\r\n")
        # Warm up every path once, so the baseline has its code and buffers.
        assert (await gw.exchange(get(headers=b"Connection: close\r\n"))).startswith(
            b"HTTP/1.1 200 "
        )
        assert (await gw.exchange(huge)).startswith(b"HTTP/1.1 431 ")
        baseline = gw.rss_kib()

        latencies: list[float] = []
        flooding = True

        async def probe_live() -> None:
            reader, writer = await gw.connect()
            try:
                while flooding:
                    started = time.monotonic()
                    status, _ = await request_on(reader, writer, "/health/live")
                    latencies.append(time.monotonic() - started)
                    assert status == 200
                    await asyncio.sleep(0.05)
            finally:
                writer.close()

        prober = asyncio.create_task(probe_live())
        answers = await asyncio.gather(*(gw.exchange(huge) for _ in range(20)))
        flooding = False
        await prober
        assert all(a.startswith(b"HTTP/1.1 431 ") for a in answers), {a[:40] for a in answers}
        growth_kib = gw.rss_kib() - baseline
        assert growth_kib < 8 * 1024, f"gateway RSS grew by {growth_kib} KiB"
        assert latencies
        assert max(latencies) < 0.5, latencies

        many = get(headers=b"".join(b"X-%d: v\r\n" % i for i in range(50_000)))
        assert (await gw.exchange(many)).startswith(b"HTTP/1.1 431 ")
        assert (await gw.exchange(get("/health/live?" + "q" * 10_000))).startswith(b"HTTP/1.1 414 ")


async def test_slow_and_idle_connections_are_closed(edge: EdgeAt) -> None:
    async with edge(ASTRA_EDGE__HEADER_TIMEOUT="1", ASTRA_EDGE__IDLE_TIMEOUT="1") as gw:
        # Half a request line, then nothing: 408 and closed after the header timeout.
        reader, writer = await gw.connect()
        started = time.monotonic()
        writer.write(b"GET /health/li")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        elapsed = time.monotonic() - started
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert 0.8 <= elapsed < 3.0, elapsed
        # An idle keep-alive connection is closed after the idle timeout.
        reader, writer = await gw.connect()
        assert (await request_on(reader, writer, "/health/live"))[0] == 200
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert 0.8 <= time.monotonic() - started < 3.0
        writer.close()


async def test_connections_above_the_per_address_cap_are_refused(
    edge: EdgeAt,
) -> None:
    async with edge(ASTRA_EDGE__MAX_CONNECTIONS_PER_ADDRESS="10") as gw:
        held = [await gw.connect() for _ in range(10)]
        # One request on each: all ten were accepted and are served.
        for reader, writer in held:
            assert (await request_on(reader, writer, "/health/live"))[0] == 200
        refused = [await closed_without_answer(gw) for _ in range(5)]
        assert refused == [True] * 5
        # The held ones are still served, and the refusals are counted.
        reader, writer = held[0]
        status, body = await request_on(reader, writer, "/metrics")
        assert status == 200
        assert b'astra_http_server_connections_refused_total{reason="per_address_cap"} 5.0' in body
        for _, w in held:
            w.close()
