"""W3C trace context in and out of envelopes (the bus has no headers of its own)."""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()


def current_traceparent(ctx: otel_context.Context | None = None) -> str | None:
    """The `traceparent` of the current (or given) span context, None when not sampled/absent."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=ctx)
    return carrier.get("traceparent")


def context_from_traceparent(traceparent: str | None) -> otel_context.Context | None:
    if not traceparent:
        return None
    return _propagator.extract({"traceparent": traceparent})
