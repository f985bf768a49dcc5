"""The limited HTTP protocol under a real uvicorn, spoken to over raw sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from prometheus_client import CollectorRegistry
from starlette.types import Receive, Scope, Send

from backbone.http_server import HttpLimits, server_options
from stack.netutil import free_port
from tests.support.asgi_server import serve_app
from tests.support.rawhttp import exchange, get

pytestmark = pytest.mark.integration

LIMITS = HttpLimits(
    max_url_bytes=1024,
    max_header_bytes=4096,
    max_headers=20,
    header_timeout=0.5,
    idle_timeout=0.5,
    max_connections_per_address=4,
)


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    body = b"hello"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def limited_server(
    limits: HttpLimits = LIMITS,
) -> AsyncIterator[tuple[int, CollectorRegistry]]:
    port = free_port()
    registry = CollectorRegistry()
    async with serve_app(hello, port, lifespan="off", **server_options(limits, registry)):
        yield port, registry


def refused(registry: CollectorRegistry, reason: str) -> float:
    value = registry.get_sample_value(
        "astra_http_server_connections_refused_total", {"reason": reason}
    )
    return value or 0.0


async def test_requests_within_the_limits_are_served() -> None:
    async with limited_server() as (port, _):
        headers = b"".join(b"X-H%d: v\r\n" % i for i in range(18))  # 19 with Host
        answer = await exchange(port, get("/" + "a" * 900, headers + b"Connection: close\r\n"))
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    assert answer.endswith(b"hello")


async def test_long_url_is_414() -> None:
    async with limited_server() as (port, registry):
        answer = await exchange(port, get("/" + "a" * 2000))
        assert answer.startswith(b"HTTP/1.1 414 "), answer[:100]
        assert b"connection: close" in answer
        assert refused(registry, "url_too_long") == 1


async def test_too_many_headers_is_431() -> None:
    async with limited_server() as (port, registry):
        many = b"".join(b"X-%d: v\r\n" % i for i in range(50_000))
        answer = await exchange(port, get(headers=many))
        assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:80]
        assert refused(registry, "too_many_headers") == 1


async def test_header_bytes_are_capped_even_for_one_huge_header() -> None:
    async with limited_server() as (port, registry):
        # Many small headers under the count cap, but over the byte cap.
        wide = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 400) for i in range(15))
        answer = await exchange(port, get(headers=wide))
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        # One 8 MiB header: refused once the head passes its budget, while the
        # client is still sending; the client still reads the answer and an EOF.
        huge = b"X-Big: " + b"a" * (8 * 1024 * 1024) + b"\r\n"
        started = time.monotonic()
        answer = await exchange(port, get(headers=huge))
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        assert time.monotonic() - started < 3
        assert refused(registry, "headers_too_large") == 2


async def test_a_stalled_request_head_is_answered_408_and_closed() -> None:
    async with limited_server() as (port, registry):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        writer.write(b"GET /slow")  # half a request line, then nothing
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        elapsed = time.monotonic() - started
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
        assert 0.4 <= elapsed < 2.0, elapsed
        assert refused(registry, "header_timeout") == 1


async def test_a_trickled_head_is_timed_from_its_first_byte() -> None:
    async with limited_server() as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        closed_after: float | None = None
        answer = b""
        for i in range(40):  # one header byte every 0.1 s: never idle, never complete
            writer.write(b"GET / HTTP/1.1\r\n" if i == 0 else b"X")
            await writer.drain()
            try:
                answer = await asyncio.wait_for(reader.read(65536), 0.1)
            except TimeoutError:
                continue
            closed_after = time.monotonic() - started
            break
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert closed_after is not None
        assert 0.4 <= closed_after < 1.5, closed_after


async def test_idle_connections_are_closed() -> None:
    async with limited_server() as (port, _):
        # Before a first byte.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert time.monotonic() - started < 2.0
        writer.close()
        # Between requests on a keep-alive connection.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"hello"), 5)
        assert head.startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert 0.4 <= time.monotonic() - started < 2.0
        writer.close()


async def test_connections_above_the_per_address_cap_are_closed() -> None:
    limits = LIMITS.model_copy(update={"idle_timeout": 30.0, "header_timeout": 30.0})
    async with limited_server(limits) as (port, registry):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]

        async def open_count() -> float:
            return registry.get_sample_value("astra_http_server_connections_open") or 0.0

        deadline = time.monotonic() + 5
        while await open_count() < 4:
            assert time.monotonic() < deadline, "connections not accepted"
            await asyncio.sleep(0.01)
        # The fifth is closed without an answer, and counted.
        answer = await exchange(port, get())
        assert answer == b""
        assert refused(registry, "per_address_cap") == 1
        # The held ones are still served.
        reader, writer = held[0]
        writer.write(get())
        await writer.drain()
        assert (await asyncio.wait_for(reader.readuntil(b"hello"), 5)).startswith(b"HTTP/1.1 200 ")
        # Closing one frees its place.
        writer.close()
        await writer.wait_closed()
        deadline = time.monotonic() + 5
        while True:
            answer = await exchange(port, get(headers=b"Connection: close\r\n"))
            if answer:
                break
            assert time.monotonic() < deadline, "the freed place was never reused"
            await asyncio.sleep(0.05)
        assert answer.startswith(b"HTTP/1.1 200 ")
        for _, w in held[1:]:
            w.close()
