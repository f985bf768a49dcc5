"""uvicorn's httptools protocol with limits that act before the ASGI app sees a request.

    bytes ─> data_received ─> llhttp ─> on_url / on_header ─> on_headers_complete ─> ASGI app
      │ cap per address:     │ head over budget:  │ URL: 414          (timer off)
      │ closed, counted      │ 431                │ headers: 431
      └ idle before a byte:  └ head not done within header_timeout: 408
        closed                 (every refusal: answer, half-close, drain, close)

    uvicorn.run(app, host=..., port=..., **server_options(HttpLimits(), registry))

Stock uvicorn has none of this: httptools (llhttp) accepts headers of any size and
number (httptools concatenates a long header in Python, quadratically), the
keep-alive timer is armed only after a first response, and nothing times the
head of a request. The checks here are counters in the parser callbacks uvicorn
already pays for, plus one byte count per read; a read is at most 256 KiB
(asyncio and uvloop), so a refused connection never buffers more than the
budget plus one read.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from functools import cache
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

# After a refusal the answer is written and our side half-closed, but the client may
# still be sending (an 8 MiB header): closing with unread bytes makes the kernel send
# a RST that can destroy the answer before the client reads it. So what still comes
# is read and dropped, for at most this long (nginx's lingering close, shorter).
LINGER_SECONDS = 2.0
# The request line's method, version and line ends on top of the URL, in bytes.
_REQUEST_LINE_SLACK = 64


class HttpLimits(BaseModel):
    """Limits of one HTTP server; `server_options(limits)` turns them into uvicorn options."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_url_bytes: int = Field(default=8 * 1024, ge=256)  # request target; 414 above
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)  # all header lines; 431 above
    max_headers: int = Field(default=100, ge=1)  # header lines; 431 above
    # Seconds from a request's first byte to the end of its headers (slowloris); 408.
    header_timeout: float = Field(default=10.0, gt=0)
    # Seconds a connection may wait for a request's first byte: between requests on a
    # keep-alive connection, and before the first one.
    idle_timeout: float = Field(default=5.0, gt=0)
    # Open connections per client address; above it a new one is closed at once.
    # None: no cap (a service sees every request from the gateway's one address).
    max_connections_per_address: int | None = Field(default=None, ge=1)


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.refused = Counter(
            "astra_http_server_connections_refused_total",
            "Connections closed by the HTTP server before the app saw a request, by reason.",
            ["reason"],
            registry=registry,
        )
        self.open = Gauge(
            "astra_http_server_connections_open",
            "Connections open to the HTTP server now.",
            registry=registry,
        )


REASONS = (
    "per_address_cap",
    "url_too_long",
    "headers_too_large",
    "too_many_headers",
    "header_timeout",
)


@cache
def server_metrics(registry: CollectorRegistry = REGISTRY) -> ServerMetrics:
    metrics = ServerMetrics(registry)
    for reason in REASONS:  # every series exists from the start, at 0
        metrics.refused.labels(reason)
    return metrics


def server_options(limits: HttpLimits, registry: CollectorRegistry = REGISTRY) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run` / `uvicorn.Config` that enforce `limits`."""
    protocol = type(
        "LimitedHttpProtocol",
        (LimitedHttpProtocol,),
        {"limits": limits, "metrics": server_metrics(registry), "per_address": Tally()},
    )
    # No process here serves WebSockets: an upgrade would hand the connection to a
    # protocol that none of these limits (or the address count) follow.
    return {"http": protocol, "ws": "none"}


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; `data_received` answers it."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class LimitedHttpProtocol(HttpToolsProtocol):
    """One connection. Built through `server_options`, which binds the class attributes."""

    limits: ClassVar[HttpLimits]
    metrics: ClassVar[ServerMetrics]
    per_address: ClassVar[Tally[str]]  # open connections, shared by one server's protocols

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # uvicorn arms its keep-alive timer with this (a float is fine for call_later).
        self.timeout_keep_alive = self.limits.idle_timeout  # type: ignore[assignment]
        self._head_budget = (
            self.limits.max_url_bytes + self.limits.max_header_bytes + _REQUEST_LINE_SLACK
        )
        self._in_head = True  # reading a request line and headers
        self._head_bytes = 0  # read while in the head, counted per read
        self._header_lines = 0
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._refusing = False
        self._address: str | None = None

    # -- connection ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.metrics.open.inc()
        cap = self.limits.max_connections_per_address
        if cap is not None and self.client is not None:
            address = self.client[0]
            if self.per_address[address] >= cap:
                self.metrics.refused.labels("per_address_cap").inc()
                self._refusing = True
                transport.close()
                return
            self.per_address[address] += 1
            self._address = address
        # The timer uvicorn arms between requests, armed for the first one too:
        # a connection that never sends a byte is idle, not "about to send".
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.metrics.open.dec()
        self._cancel_header_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        if self._address is not None:
            self.per_address[self._address] -= 1
            if self.per_address[self._address] <= 0:
                del self.per_address[self._address]
            self._address = None

    def data_received(self, data: bytes) -> None:
        # Replaces uvicorn's: it answers any parser error, ours included, with a 400.
        if self._refusing:
            return  # lingering: drop what the client still sends
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(
                    self.limits.header_timeout, self._header_timeout
                )
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as e:
            if isinstance(e.__context__, _Refused):
                self._refuse(e.__context__.status, e.__context__.reason)
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        # The callbacks only see completed pieces; this bounds the one being read.
        if self._in_head and self._head_bytes > self._head_budget:
            self._refuse(431, "headers_too_large")

    # -- parser callbacks -----------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_url_bytes:
            raise _Refused(414, "url_too_long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_lines += 1
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._header_lines > self.limits.max_headers:
            raise _Refused(431, "too_many_headers")
        if self._header_bytes > self.limits.max_header_bytes:
            raise _Refused(431, "headers_too_large")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next request's head starts here (keep-alive or pipelined).
        self._in_head = True
        self._head_bytes = 0
        self._header_lines = 0
        self._header_bytes = 0

    # -- refusals -----------------------------------------------------------------

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, "header_timeout")

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, status: int, reason: str) -> None:
        self.metrics.refused.labels(reason).inc()
        self._cancel_header_timer()
        self._refusing = True
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request while the one before is still answered: an answer
            # now would interleave with that one's, so the connection just ends.
            self.transport.close()
            return
        body = HTTPStatus(status).phrase.encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        )
        self.transport.write(b"".join([*head, body]))
        self.flow.resume_reading()  # keep draining even if a body had paused reads
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:  # TLS cannot half-close
            self.transport.close()
