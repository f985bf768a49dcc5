"""One accepted client and the upstream connection dialled for it.

    client <-> [client endpoint]  --upstream link-->   [upstream endpoint] <-> upstream
                                  <--downstream link--

The client's socket is not read until the upstream answers (bytes that arrive anyway
are kept and fed first); if the upstream refuses, the client is closed, as Toxiproxy
does. The connection is gone once both sockets are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from typing import TYPE_CHECKING, Any, cast

from chaos.faultproxy._addr import split_host_port
from chaos.faultproxy.direction import Direction
from chaos.faultproxy.link import Link

if TYPE_CHECKING:
    from chaos.faultproxy.proxy import Proxy

_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class Connection:
    """A client socket, the upstream socket dialled for it, and the two links between."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.client = _Endpoint(self)
        self.upstream = _Endpoint(self)
        self.links: list[Link] = []
        self._connect: asyncio.Task[None] | None = None
        self._open = 0  # endpoints with a live transport
        self._closed = False

    def __repr__(self) -> str:
        return f"<Connection proxy={self.proxy.name} links={self.links}>"

    def endpoint_made(self, endpoint: _Endpoint) -> None:
        self._open += 1
        transport = endpoint.transport
        assert transport is not None
        _set_nodelay(transport)
        if endpoint is self.client:
            if not self.proxy.enabled:
                transport.abort()  # accepted in the instant the proxy was disabled
                return
            transport.pause_reading()  # until the upstream answers
            self.proxy.connection_opened(self)
            self._connect = self.proxy.spawn(self._dial())
        elif self._closed or self.client.lost:
            transport.abort()
        else:
            self._link_up()

    async def _dial(self) -> None:
        try:
            host, port = split_host_port(self.proxy.upstream)
            await asyncio.get_running_loop().create_connection(lambda: self.upstream, host, port)
        except (OSError, ValueError) as e:
            self.proxy.stats.upstream_errors += 1
            self.proxy.logger.error(
                "unable to open connection to upstream",
                extra={**self.proxy._fields(), "error": str(e)},
            )
            if self.client.transport is not None:
                self.client.transport.close()
        finally:
            self._connect = None
            self._maybe_close()

    def _link_up(self) -> None:
        client, upstream = self.client.transport, self.upstream.transport
        assert client is not None
        assert upstream is not None
        proxy = self.proxy
        common: dict[str, Any] = {
            "stats": proxy.stats,
            "rng": proxy.rng,
            "logger": proxy.logger,
            "spawn": proxy.spawn,
            "on_reset": self.reset,
        }
        up = Link(Direction.UPSTREAM, client, upstream, **common)
        down = Link(Direction.DOWNSTREAM, upstream, client, **common)
        self.client.feeds, self.client.drains = up, down
        self.upstream.feeds, self.upstream.drains = down, up
        self.links = [up, down]
        for link in self.links:
            proxy.toxics.attach(link)
        for endpoint, link in ((self.client, up), (self.upstream, down)):
            early, endpoint.early = endpoint.early, []
            for data in early:
                if data:
                    link.feed(data)
                else:
                    link.feed_eof()
        client.resume_reading()
        if proxy.logger.isEnabledFor(logging.DEBUG):
            proxy.logger.debug(
                "accepted client",
                extra={**proxy._fields(), "client": str(client.get_extra_info("peername"))},
            )

    def endpoint_lost(self, endpoint: _Endpoint) -> None:
        self._open -= 1
        if endpoint.feeds is not None:
            endpoint.feeds.feed_eof()
        if endpoint.drains is not None:
            endpoint.drains.dest_lost()
        if endpoint is self.client and self._connect is not None:
            self._connect.cancel()
        self._maybe_close()

    def _maybe_close(self) -> None:
        if self._open == 0 and self._connect is None:
            self._close()

    def reset(self) -> None:
        """Abort both sockets with RST (the reset_peer toxic)."""
        for endpoint in (self.client, self.upstream):
            transport = endpoint.transport
            if transport is not None and not endpoint.lost:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                transport.abort()
        self._shutdown_links()

    def abort(self) -> None:
        """Drop the connection now (proxy disabled, deleted or re-pointed)."""
        if self._connect is not None:
            self._connect.cancel()
        for endpoint in (self.client, self.upstream):
            if endpoint.transport is not None and not endpoint.lost:
                endpoint.transport.abort()
        self._shutdown_links()
        self._close()

    def _shutdown_links(self) -> None:
        for link in self.links:
            link.shutdown()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._shutdown_links()
        for link in self.links:
            self.proxy.toxics.detach(link)
        self.proxy.connection_closed(self)


class _Endpoint(asyncio.Protocol):
    """One socket of a connection: what it receives `feeds` one link, the other `drains` into it."""

    __slots__ = ("conn", "drains", "early", "feeds", "lost", "transport")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.feeds: Link | None = None
        self.drains: Link | None = None
        self.lost = False
        # Bytes that arrived before the links existed (uvloop may deliver data even
        # though reading was paused in connection_made); fed first once linked.
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.conn.endpoint_made(self)

    def data_received(self, data: bytes) -> None:
        feeds = self.feeds
        if feeds is not None:
            feeds.feed(data)
        else:
            self.early.append(data)
            if self.transport is not None and not self.transport.is_closing():
                self.transport.pause_reading()  # this time it holds: reading has started

    def eof_received(self) -> bool:
        if self.feeds is not None:
            self.feeds.feed_eof()
        else:
            self.early.append(b"")  # end of stream, replayed once linked
        return True  # keep the socket open: the other direction may still deliver

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.conn.endpoint_lost(self)

    def pause_writing(self) -> None:
        if self.drains is not None:
            self.drains.pause_writing()

    def resume_writing(self) -> None:
        if self.drains is not None:
            self.drains.resume_writing()


def _set_nodelay(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
