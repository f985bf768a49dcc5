"""Correlation ID and trace context survive publish -> Redis -> consume -> publish."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from backbone.bus.consumer import Consumer, Event, HandlerContext
from backbone.bus.envelope import decode
from backbone.bus.publisher import Publisher
from backbone.config import BusSettings
from backbone.telemetry import correlation
from tests.support.events import Ping, Pinged, Pong, Ponged

pytestmark = pytest.mark.integration


async def test_one_trace_from_publish_to_handler(redis_client: aioredis.Redis) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    registry = CollectorRegistry()
    settings = BusSettings(block_ms=50)
    publisher = Publisher(
        redis_client, producer="test", settings=settings, tracer=tracer, registry=registry
    )
    seen: dict[str, Any] = {}

    async def handle(event: Event[Ping], ctx: HandlerContext) -> None:
        seen["correlation_id"] = correlation.get_correlation_id()
        seen["causation_id"] = correlation.get_causation_id()
        seen["span"] = trace.get_current_span().get_span_context()
        ctx.publish(Ponged, Pong(n=event.data.n))

    consumer = Consumer(
        redis_client,
        group="g",
        consumer="c",
        handlers={Pinged: handle},
        settings=settings,
        producer="test",
        tracer=tracer,
        registry=registry,
    )
    token = correlation.set_correlation_id("order-42")
    try:
        with tracer.start_as_current_span("client request") as root:
            published = await publisher.publish(Pinged, Ping(n=1))
    finally:
        correlation.reset_correlation_id(token)
    assert correlation.get_correlation_id() is None
    await consumer.run(burst=True)

    trace_id = root.get_span_context().trace_id
    spans = {s.name: s for s in exporter.get_finished_spans()}
    producer = spans[f"{Pinged.stream_key} publish"]
    process = spans[f"{Pinged.stream_key} process"]
    assert producer.kind is trace.SpanKind.PRODUCER
    assert process.kind is trace.SpanKind.CONSUMER
    assert producer.context.trace_id == process.context.trace_id == trace_id
    assert process.parent is not None
    assert process.parent.span_id == producer.context.span_id
    assert process.attributes is not None
    assert process.attributes["messaging.consumer.group.name"] == "g"
    assert process.attributes["messaging.destination.name"] == Pinged.stream_key
    assert process.attributes["messaging.message.id"] == published.event_id
    assert process.attributes["messaging.operation.type"] == "process"
    assert seen["correlation_id"] == "order-42"
    assert seen["causation_id"] == published.event_id
    assert seen["span"].span_id == process.context.span_id

    # The event the handler published carries the chain onwards.
    [(_, fields)] = await redis_client.xrange(Ponged.stream_key)
    follow_up = decode(fields[b"envelope"])
    assert follow_up.correlation_id == "order-42"
    assert follow_up.causation_id == published.event_id
    assert follow_up.traceparent is not None
    assert follow_up.traceparent.split("-")[1] == format(trace_id, "032x")
    assert follow_up.traceparent.split("-")[2] == format(process.context.span_id, "016x")
    provider.shutdown()
