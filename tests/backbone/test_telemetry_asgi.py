"""The one ASGI middleware: one server span per request, named by route template."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from starlette.types import Receive, Scope, Send

from backbone.service.app import NATIVE_TELEMETRY_OFF
from backbone.telemetry.asgi import SLO_CLASS, TelemetryMiddleware
from backbone.telemetry.http_metrics import HttpMetrics


async def test_one_server_span_named_by_route_with_parent_from_traceparent() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = FastAPI(**NATIVE_TELEMETRY_OFF)

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, int]:
        return {"order_id": order_id}

    registry = CollectorRegistry()
    app.add_middleware(
        TelemetryMiddleware, metrics=HttpMetrics(registry), tracer=provider.get_tracer("t")
    )
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        response = await http.get("/orders/42", headers={"traceparent": parent})
        await http.get("/metrics-not-here")
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["GET /orders/{order_id}", "GET <unmatched>"]
    span = spans[0]
    assert span.kind is trace.SpanKind.SERVER
    assert span.context.trace_id == int("0af7651916cd43dd8448eb211c80319c", 16)
    assert span.parent is not None
    assert span.parent.span_id == int("b7ad6b7169203331", 16)
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/orders/{order_id}"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["astra.correlation_id"] == response.headers["x-correlation-id"]
    assert spans[1].attributes is not None
    assert spans[1].attributes["http.response.status_code"] == 404
    count = registry.get_sample_value(
        "astra_http_server_requests_total",
        {"method": "GET", "route": "/orders/{order_id}", "status": "200", "slo_class": "none"},
    )
    assert count == 1
    provider.shutdown()


async def test_the_slo_class_an_app_puts_in_the_scope_labels_the_request_metrics() -> None:
    """The gateway's proxy names the route's class in the scope; nothing else does."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/classified":
            scope[SLO_CLASS] = "write"
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    registry = CollectorRegistry()
    wrapped = TelemetryMiddleware(app, metrics=HttpMetrics(registry))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=wrapped), base_url="http://test"
    ) as http:
        await http.post("/classified")
        await http.post("/plain")
    labels = {"method": "POST", "route": "<unmatched>", "status": "204"}
    for klass in ("write", "none"):
        count = registry.get_sample_value(
            "astra_http_server_requests_total", {**labels, "slo_class": klass}
        )
        assert count == 1, klass
    latency = registry.get_sample_value(
        "astra_http_server_request_duration_seconds_count",
        {"method": "POST", "route": "<unmatched>", "slo_class": "write"},
    )
    assert latency == 1
