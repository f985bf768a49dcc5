"""What each piece of TelemetryMiddleware costs, in-process: `python -m bench.telemetry --micro`.

One process, one trivial ASGI app (sets a route, answers 200), the middleware
around it driven N times in a loop; CPU µs per request of each configuration
minus the bare app. The span exporter runs in BatchSpanProcessor's thread in
the real processes; here its cost is measured by serialising the finished spans
directly (`span_to_dict` + orjson, as JsonLinesSpanExporter does) per span.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from prometheus_client import CollectorRegistry
from starlette.types import Message, Receive, Scope, Send

from backbone.telemetry.asgi import TelemetryMiddleware
from backbone.telemetry.http_metrics import HttpMetrics
from backbone.telemetry.logs import setup_logging
from backbone.telemetry.tracing import JsonLinesSpanExporter, span_to_dict

_NOOP = trace.NoOpTracer()
_ROUTE = SimpleNamespace(path="/api/v1/trading/markets")
_BODY = {"type": "http.response.body", "body": b"[]"}
_START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"x")]}


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    scope["route"] = _ROUTE
    await send(dict(_START))
    await send(_BODY)


class _Collect(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _scope(traceparent: bool) -> Scope:
    headers = [(b"host", b"127.0.0.1"), (b"authorization", b"Bearer x" * 40)]
    if traceparent:
        headers.append((b"traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"))
    return {"type": "http", "method": "GET", "path": "/api/v1/trading/markets", "headers": headers}


async def _drive(
    app: Any, n: int, traceparent: bool, flush: Callable[[], object] | None = None
) -> float:
    """CPU µs per request, all threads (the batch processor's export thread included)."""

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        return None

    start = time.process_time()
    for _ in range(n):
        await app(_scope(traceparent), receive, send)
    if flush is not None:
        flush()
    return (time.process_time() - start) / n * 1e6


@contextlib.contextmanager
def _logs(level: str, log_dir: Path) -> Iterator[None]:
    """JSON logs as `serve()` sets them up; stderr pointed at /dev/null for the duration."""
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        setup_logging(service="bench", instance_id="bench-1", level=level, log_dir=log_dir)
        yield
    finally:
        logging.getLogger().handlers.clear()
        os.dup2(saved, 2)
        os.close(null)
        os.close(saved)


async def measure(log_dir: Path, n: int = 20_000) -> dict[str, float]:
    """CPU µs per request over the bare app, per configuration (each a total, not a delta
    from the line before), and the exporter's serialisation per span on its own."""
    resource = Resource.create({"service.name": "bench", "service.instance.id": "bench-1"})

    def sdk(ratio: float, processor: SpanProcessor | None) -> trace.Tracer:
        provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(ratio)))
        if processor is not None:
            provider.add_span_processor(processor)
        return provider.get_tracer("backbone.http")

    def mw(tracer: trace.Tracer) -> TelemetryMiddleware:
        return TelemetryMiddleware(_app, metrics=HttpMetrics(CollectorRegistry()), tracer=tracer)

    def exported(ratio: float) -> trace.Tracer:
        exporter = JsonLinesSpanExporter(log_dir / f"spans-{ratio}.jsonl")
        return sdk(ratio, BatchSpanProcessor(exporter, schedule_delay_millis=500))

    collected = _Collect()
    configs: dict[str, tuple[Any, str, bool]] = {
        "bare app": (_app, "WARNING", False),
        "off: middleware (metrics), no tracer, logs WARNING": (mw(_NOOP), "WARNING", False),
        "logs only: + access line at INFO (stderr + file)": (mw(_NOOP), "INFO", False),
        "tracing 1.0, no processor": (mw(sdk(1.0, None)), "WARNING", False),
        "tracing 1.0, SimpleSpanProcessor to a list": (
            mw(sdk(1.0, SimpleSpanProcessor(collected))), "WARNING", False,
        ),
        "tracing 1.0, JSON-lines export (batch processor)": (mw(exported(1.0)), "WARNING", False),
        "tracing 1.0 + incoming traceparent": (mw(exported(1.0)), "WARNING", True),
        "tracing 0.1, JSON-lines export": (mw(exported(0.1)), "WARNING", False),
        "on: tracing 1.0 exported + access line": (mw(exported(1.0)), "INFO", False),
        "on 10 %: tracing 0.1 exported + access line": (mw(exported(0.1)), "INFO", False),
    }  # fmt: skip
    out: dict[str, float] = {}
    for name, (app, level, traceparent) in configs.items():
        provider = getattr(getattr(app, "tracer", None), "_provider", None)  # SDK tracers only
        flush = provider.force_flush if provider is not None else None
        with _logs(level, log_dir):
            await _drive(app, n // 10, traceparent)  # warm-up
            collected.spans.clear()
            out[name] = round(await _drive(app, n, traceparent, flush=flush), 2)
    spans = collected.spans[:n]
    start = time.process_time()
    for span in spans:
        orjson.dumps(span_to_dict(span), default=str)
    out["export: span_to_dict + orjson, per span"] = round(
        (time.process_time() - start) / max(len(spans), 1) * 1e6, 2
    )
    bare = out["bare app"]
    return {
        k: (v if k.startswith(("bare", "export")) else round(v - bare, 2)) for k, v in out.items()
    }
