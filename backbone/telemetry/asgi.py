"""One pure-ASGI middleware for correlation IDs, the server span, RED metrics and access logs.

Pure ASGI (not BaseHTTPMiddleware) so context variables set here are seen by
the endpoint. One span per request: the stock ASGI instrumentation also makes a
span per send/receive, which costs a large share of a small request's time.

A request whose client went away before an answer was started is recorded as
499 (nginx's "client closed request"), not as whatever the app did next: it was
not served, but it is not a server error either, so it never reaches the 5xx
ratios the availability SLO reads.

The request metrics also carry the SLO class of the route (`slo_class`): an app
that knows one puts it in the scope under `SLO_CLASS` (the gateway's proxy does,
from its route table), so an SLO query selects a class instead of listing routes.
Everything else (health, metrics, every service-side request) is `"none"`. The
class is fixed per route, so the label adds no series.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry import trace
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backbone.telemetry import correlation
from backbone.telemetry.http_metrics import HttpMetrics
from backbone.telemetry.propagation import context_from_traceparent

access_log = logging.getLogger("astra.access")
_SERVER = trace.SpanKind.SERVER
_CID_HEADER = correlation.HEADER_LOWER
UNMATCHED = "<unmatched>"
CLIENT_CLOSED_REQUEST = 499
SLO_CLASS = "astra.slo_class"  # scope key: the route's SLO class, a short fixed word
NO_SLO_CLASS = "none"


def route_template(scope: Scope) -> str:
    """The matched route's template (`/orders/{order_id}`), bounded for labels."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def slo_class(scope: Scope) -> str:
    """The SLO class the app put in the scope, or `NO_SLO_CLASS`."""
    value = scope.get(SLO_CLASS)
    return value if isinstance(value, str) and value else NO_SLO_CLASS


class TelemetryMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: HttpMetrics,
        tracer: trace.Tracer | None = None,
        quiet_paths: Iterable[str] = ("/metrics", "/health/live", "/health/ready"),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer or trace.get_tracer("backbone.http")
        self.quiet_paths = frozenset(quiet_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming_cid: bytes | None = None
        traceparent: bytes | None = None
        for name, value in scope["headers"]:
            if name == _CID_HEADER:
                incoming_cid = value
            elif name == b"traceparent":
                traceparent = value
        cid = correlation.accept(incoming_cid.decode("latin-1") if incoming_cid else None)
        token = correlation.set_correlation_id(cid)
        cid_header = (_CID_HEADER, cid.encode())
        method = scope["method"]
        quiet = scope["path"] in self.quiet_paths
        status = 500
        answering = False  # http.response.start was sent
        gone = False  # the client disconnected before that
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status, answering
            if message["type"] == "http.response.start":
                answering = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), cid_header]
            await send(message)

        async def receive_wrapper() -> Message:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect" and not answering:
                gone = True
            return message

        self.metrics.in_flight.inc()
        span: Any = None
        if not quiet:
            parent = (
                context_from_traceparent(traceparent.decode("latin-1")) if traceparent else None
            )
            # Started and ended here, not in a `with`: the route template is only
            # known once the app has routed, and the span must still be open to
            # take its final name and attributes.
            span = self.tracer.start_span(method, context=parent, kind=_SERVER)

        async def call_app() -> None:
            try:
                await self.app(scope, receive_wrapper, send_wrapper)
            except ClientDisconnect:
                # Starlette's body readers raise it on the disconnect. Nobody is left
                # to answer; re-raised, it would be logged and recorded as a failure.
                if not gone:
                    raise

        try:
            if span is None:
                await call_app()
            else:
                with trace.use_span(span, end_on_exit=False, record_exception=True):
                    await call_app()
        finally:
            if gone:  # whatever the app sent afterwards, nobody received it
                status = CLIENT_CLOSED_REQUEST
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            klass = slo_class(scope)
            self.metrics.requests.labels(method, route, str(status), klass).inc()
            ctx = span.get_span_context() if span is not None else None
            sampled = ctx is not None and ctx.trace_flags.sampled
            exemplar = {"trace_id": format(ctx.trace_id, "032x")} if sampled and ctx else None
            self.metrics.duration.labels(method, route, klass).observe(elapsed, exemplar)
            if span is not None:
                if span.is_recording():
                    span.update_name(f"{method} {route}")
                    span.set_attributes(
                        {
                            "http.request.method": method,
                            "http.route": route,
                            "url.path": scope["path"],
                            "http.response.status_code": status,
                            "astra.correlation_id": cid,
                        }
                    )
                    if status >= 500:
                        span.set_status(trace.StatusCode.ERROR)
                span.end()
            if not quiet:
                fields: dict[str, Any] = {
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                }
                if ctx is not None and ctx.is_valid:
                    fields["trace_id"] = format(ctx.trace_id, "032x")
                    fields["span_id"] = format(ctx.span_id, "016x")
                access_log.info("request", extra=fields)
            correlation.reset_correlation_id(token)
