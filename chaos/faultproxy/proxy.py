"""One proxy: a listener, the connections it accepted, and its toxics (Toxiproxy's `proxy.go`).

    client <-> Proxy(listen) <-> upstream      one `Connection` per accepted client

Disabling the proxy closes the listener (new clients are refused) and drops every open
connection; a new `listen` is bound before the old one is let go.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Coroutine
from typing import Any

from chaos.faultproxy._addr import join_host_port, split_host_port
from chaos.faultproxy.connection import Connection
from chaos.faultproxy.errors import ListenError
from chaos.faultproxy.metrics import ProxyStats
from chaos.faultproxy.toxic_collection import ToxicCollection

_BACKLOG = 1024

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
        conn = Connection(
            self.name,
            self.toxics,
            stats=self.stats,
            rng=self.rng,
            logger=self.logger,
            spawn=self.spawn,
            admit=self._admit,
            on_close=self.connection_closed,
            log_fields=self._fields,
        )
        return conn.client

    # -- handed to each Connection ---------------------------------------------------

    def _admit(self, conn: Connection) -> str | None:
        """Register an accepted client and name the upstream to dial; None if disabled."""
        if not self.enabled:
            return None
        self.connection_opened(conn)
        return self.upstream

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
