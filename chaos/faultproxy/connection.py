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
import random
import socket
import struct
from collections.abc import Callable
from typing import Any, cast

from chaos.faultproxy._addr import split_host_port
from chaos.faultproxy.direction import Direction
from chaos.faultproxy.link import Link, Spawn
from chaos.faultproxy.metrics import ProxyStats
from chaos.faultproxy.toxic_collection import ToxicCollection

_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class Connection:
    """A client socket, the upstream socket dialled for it, and the two links between.

    Like a `Link`, it is handed what it needs and never its proxy, so the proxy stays
    the only owner of its own state (and the two modules do not import each other):

    conn = Connection("redis", toxics, stats=stats, rng=rng, logger=log, spawn=proxy.spawn,
                      admit=proxy._admit, on_close=proxy.connection_closed,
                      log_fields=proxy._fields)
    return conn.client                # the protocol of the socket just accepted
    """

    def __init__(
        self,
        name: str,
        toxics: ToxicCollection,
        *,
        stats: ProxyStats,
        rng: random.Random,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        spawn: Spawn,
        admit: Callable[[Connection], str | None],
        on_close: Callable[[Connection], None],
        log_fields: Callable[[], dict[str, object]],
    ) -> None:
        self.name = name  # the proxy's, for repr
        self.toxics = toxics
        self.stats = stats
        self.rng = rng
        self.logger = logger
        self.spawn = spawn
        # Asked once the client socket is up: registers the connection and says which
        # upstream to dial, or None when the proxy was disabled since the accept.
        self._admit = admit
        self._on_close = on_close
        # A callable, not a dict: the proxy's listen and upstream are read when logging.
        self._log_fields = log_fields
        self.client = _Endpoint(self)
        self.upstream = _Endpoint(self)
        self.links: list[Link] = []
        self._connect: asyncio.Task[None] | None = None
        self._open = 0  # endpoints with a live transport
        self._closed = False

    def __repr__(self) -> str:
        return f"<Connection proxy={self.name} links={self.links}>"

    def endpoint_made(self, endpoint: _Endpoint) -> None:
        self._open += 1
        transport = endpoint.transport
        assert transport is not None
        _set_nodelay(transport)
        if endpoint is self.client:
            upstream = self._admit(self)
            if upstream is None:
                transport.abort()  # accepted in the instant the proxy was disabled
                return
            transport.pause_reading()  # until the upstream answers
            self._connect = self.spawn(self._dial(upstream))
        elif self._closed or self.client.lost:
            transport.abort()
        else:
            self._link_up()

    async def _dial(self, upstream: str) -> None:
        # `upstream` was read at admission; a later change of the proxy's upstream drops
        # every admitted connection, this one included, so it cannot be stale here.
        try:
            host, port = split_host_port(upstream)
            await asyncio.get_running_loop().create_connection(lambda: self.upstream, host, port)
        except (OSError, ValueError) as e:
            self.stats.upstream_errors += 1
            self.logger.error(
                "unable to open connection to upstream",
                extra={**self._log_fields(), "error": str(e)},
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
        common: dict[str, Any] = {
            "stats": self.stats,
            "rng": self.rng,
            "logger": self.logger,
            "spawn": self.spawn,
            "on_reset": self.reset,
        }
        up = Link(Direction.UPSTREAM, client, upstream, **common)
        down = Link(Direction.DOWNSTREAM, upstream, client, **common)
        self.client.feeds, self.client.drains = up, down
        self.upstream.feeds, self.upstream.drains = down, up
        self.links = [up, down]
        for link in self.links:
            self.toxics.attach(link)
        for endpoint, link in ((self.client, up), (self.upstream, down)):
            early, endpoint.early = endpoint.early, []
            for data in early:
                if data:
                    link.feed(data)
                else:
                    link.feed_eof()
        client.resume_reading()
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(
                "accepted client",
                extra={**self._log_fields(), "client": str(client.get_extra_info("peername"))},
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
            self.toxics.detach(link)
        self._on_close(self)


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
