"""Raw HTTP/1.1 over a socket, for tests of what a server does before any app runs."""

from __future__ import annotations

import asyncio


async def exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send `request` to 127.0.0.1:`port`, then read until the server closes (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def get(path: str = "/", headers: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n"
