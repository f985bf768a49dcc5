"""Tracer provider set-up: OTLP when an endpoint is configured, else JSON lines on disk.

Sampling is parent-based with a ratio for new traces (1.0 locally, so every
request can be followed; production sets e.g. 0.1 through
`ASTRA_TELEMETRY__SAMPLE_RATIO` or the standard `OTEL_TRACES_SAMPLER_ARG`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import orjson
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from backbone.config import TelemetrySettings

_KINDS = {k: k.name.lower() for k in trace.SpanKind}


class JsonLinesSpanExporter(SpanExporter):
    """Finished spans as one JSON object per line; `astra trace` reads these files."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = path.open("ab")
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = b"".join(orjson.dumps(span_to_dict(s), default=str) + b"\n" for s in spans)
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            self._file.write(lines)
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def span_to_dict(span: ReadableSpan) -> dict[str, object]:
    ctx = span.context
    parent = span.parent
    resource = span.resource.attributes
    start, end = span.start_time or 0, span.end_time or 0
    return {
        "trace_id": format(ctx.trace_id, "032x") if ctx else None,
        "span_id": format(ctx.span_id, "016x") if ctx else None,
        "parent_id": format(parent.span_id, "016x") if parent else None,
        "name": span.name,
        "kind": _KINDS.get(span.kind, "internal"),
        "service": resource.get("service.name"),
        "instance": resource.get("service.instance.id"),
        "start_ns": start,
        "duration_ms": round((end - start) / 1e6, 3),
        "status": span.status.status_code.name.lower(),
        "attributes": dict(span.attributes or {}),
        "links": [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
            }
            for link in span.links
        ],
    }


def build_tracer_provider(
    settings: TelemetrySettings, *, service: str, version: str, instance_id: str
) -> TracerProvider | None:
    """A provider for this process, or None when tracing is off."""
    if not settings.tracing:
        return None
    resource = Resource.create(
        {"service.name": service, "service.version": version, "service.instance.id": instance_id}
    )
    provider = TracerProvider(
        resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio))
    )
    exporter: SpanExporter | None = None
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint.rstrip("/") + "/v1/traces")
    elif settings.traces_dir is not None:
        exporter = JsonLinesSpanExporter(settings.traces_dir / f"{instance_id}.jsonl")
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    return provider


def resolve_tracer(name: str, tracer: trace.Tracer | None = None) -> trace.Tracer:
    """`tracer`, else the installed provider's, else a no-op tracer.

    Without an SDK provider the API hands out proxy tracers whose spans still cost
    several microseconds each; a hot loop (the bus) asks once and keeps a no-op.
    """
    if tracer is not None:
        return tracer
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return trace.NoOpTracer()
    return trace.get_tracer(name)


def install_tracer_provider(provider: TracerProvider) -> None:
    """Make `provider` the process-global one (OpenTelemetry allows this once per process)."""
    trace.set_tracer_provider(provider)
