"""One proxy: a listener, the connections it accepted, and its toxics (Toxiproxy's `proxy.go`).

    client <-> [client endpoint]  --upstream link-->   [upstream endpoint] <-> upstream
                                  <--downstream link--

Each accepted client gets a `Connection`: the proxy dials the upstream (the client's
socket is not read until that succeeds), then two links move the bytes. Disabling the
proxy closes the listener (new clients are refused) and drops every open connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections.abc import Coroutine
from typing import Any, cast

from chaos.faultproxy._addr import join_host_port, split_host_port
from chaos.faultproxy.direction import Direction
from chaos.faultproxy.errors import ListenError
from chaos.faultproxy.link import Link
from chaos.faultproxy.metrics import ProxyStats
from chaos.faultproxy.toxic_collection import ToxicCollection

_BACKLOG = 1024
_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


class Proxy:
    """A named listener forwarding to `upstream`.

    proxy = Proxy("redis", "127.0.0.1:0", "127.0.0.1:6379", stats=stats, logger=log, rng=rng)
    await proxy.start()          # proxy.listen is now the real address, e.g. 127.0.0.1:41234
    proxy.toxics.add_json({"type": "latency", "attributes": {"latency": 100}})
    await proxy.aclose()
    """

    def __init__(
        self,
        name: str,
        listen: str,
        upstream: str,
        *,
        stats: ProxyStats,
        logger: Logger,
        rng: random.Random,
    ) -> None:
        self.name = name
        self.listen = listen  # the bound address once started
        self.requested_listen = listen  # as the client asked (port 0 stays 0)
        self.upstream = upstream
        self.enabled = False
        self.stats = stats
        self.logger = logger
        self.rng = rng
        self.toxics = ToxicCollection(stats)
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return (
            f"<Proxy {self.name} listen={self.listen} upstream={self.upstream} "
            f"enabled={self.enabled} connections={len(self._connections)} "
            f"toxics={len(self.toxics)}>"
        )

    @property
    def connections(self) -> int:
        return len(self._connections)

    def matches(self, listen: str, upstream: str) -> bool:
        """Whether `/populate` may keep this proxy for that listen/upstream pair."""
        return upstream == self.upstream and listen in (self.listen, self.requested_listen)

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Bind and serve; `ListenError` leaves the proxy as it was (disabled)."""
        if self.enabled:
            return
        await self._serve(await bind(self.listen))

    async def stop(self) -> None:
        """Stop listening and drop every open connection."""
        if not self.enabled:
            return
        self.enabled = False
        server, self._server = self._server, None
        self.drop_connections()
        if server is not None:
            server.close()
            await server.wait_closed()
        self.logger.info("terminated proxy", extra=self._fields())

    async def update(self, *, listen: str, upstream: str, enabled: bool) -> None:
        """Apply a PATCH; a new `listen` is bound before the old one is let go."""
        if listen != self.listen:
            sock = await bind(listen) if enabled else None
            await self.stop()
            self.listen = self.requested_listen = listen
            self.upstream = upstream
            if sock is not None:
                await self._serve(sock)
            return
        if upstream != self.upstream:
            self.drop_connections()  # they lead to the old upstream
            self.upstream = upstream
        if enabled:
            await self.start()
        else:
            await self.stop()

    async def aclose(self) -> None:
        """Stop, remove the toxics and wait for every task of this proxy to end."""
        await self.stop()
        self.toxics.reset()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def drop_connections(self) -> None:
        for conn in list(self._connections):
            conn.abort()

    async def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(self._accept, sock=sock, backlog=_BACKLOG)
        except BaseException:
            sock.close()
            raise
        host, port = sock.getsockname()[:2]
        self.listen = join_host_port(host, port)
        self.enabled = True
        self.logger.info("started proxy", extra=self._fields())

    def _accept(self) -> asyncio.Protocol:
        return Connection(self).client

    # -- used by Connection ----------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def connection_opened(self, conn: Connection) -> None:
        self._connections.add(conn)
        self.stats.connections += 1
        self.stats.active_connections += 1

    def connection_closed(self, conn: Connection) -> None:
        if conn in self._connections:
            self._connections.remove(conn)
            self.stats.active_connections -= 1

    def _fields(self) -> dict[str, object]:
        return {"proxy": self.name, "listen": self.listen, "upstream": self.upstream}


async def bind(listen: str) -> socket.socket:
    """A listening socket for `listen`, or `ListenError` worded as Go's `net.Listen`."""
    try:
        host, port = split_host_port(listen)
    except ValueError as e:
        raise ListenError(f"listen tcp: {e}") from e
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            host or "0.0.0.0", port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as e:
        raise ListenError(f"listen tcp: lookup {host}: no such host") from e
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        reason = (e.strerror or str(e)).lower()
        raise ListenError(
            f"listen tcp {join_host_port(str(address[0]), port)}: bind: {reason}"
        ) from e
    return sock


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
