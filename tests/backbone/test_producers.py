"""Consumers apply only events from the producers an event type declares.

Anyone who can XADD to a stream can write a well-formed envelope; these tests
forge one (by hand, as an attacker would: `encode` refuses undeclared producers)
and check it is dead-lettered before any handler or effect sees it.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from backbone import keys
from backbone.bus.catalog import asyncapi_document, json_schemas
from backbone.bus.consumer import Consumer, Event, HandlerContext
from backbone.bus.envelope import encode, new_event_id
from backbone.bus.streams import EventCatalog, EventType
from backbone.config import BusSettings
from backbone.errors import EnvelopeError, StreamNameError
from contracts import CATALOG
from contracts.gateway import ActionAudited
from contracts.trading import TradeExecuted, TradeExecutedData
from tests.support.events import Ping, Pinged, trade_data

FAST = BusSettings(batch_size=50, block_ms=50, claim_idle_ms=100, reaper_interval_ms=50)


def forged(event_type: EventType[Any], data: BaseModel, producer: str) -> bytes:
    """A valid envelope naming any producer: what a client with XADD rights can write."""
    return orjson.dumps(
        {
            "event_id": new_event_id(),
            "type": event_type.type,
            "version": event_type.version,
            "occurred_at": datetime.now(UTC).isoformat(),
            "producer": producer,
            "correlation_id": "c-forged",
            "data": data.model_dump(mode="json"),
        }
    )


def trade(n: int) -> TradeExecutedData:
    return trade_data(n, "mallory")


def dead_lettered(registry: CollectorRegistry, stream: str, reason: str) -> float:
    labels = {"stream": stream, "group": "g", "reason": reason}
    return registry.get_sample_value("astra_bus_dead_lettered_events_total", labels) or 0.0


@pytest.mark.integration
async def test_a_forged_trade_from_another_producer_is_dead_lettered_never_handled(
    redis_client: aioredis.Redis,
) -> None:
    stream = TradeExecuted.stream_key
    for n, producer in enumerate(("mallory", "gamification", "Trading"), start=1):
        await redis_client.xadd(
            stream, {keys.ENVELOPE_FIELD: forged(TradeExecuted, trade(n), producer)}
        )
    _, genuine = encode(TradeExecuted, trade(9), producer="trading", correlation_id="c")
    await redis_client.xadd(stream, {keys.ENVELOPE_FIELD: genuine})
    registry = CollectorRegistry()
    handled: list[int] = []

    async def on_trade(event: Event[TradeExecutedData], ctx: HandlerContext) -> None:
        handled.append(event.data.trade_number)
        ctx.effects.call("INCRBY", "xp:u-mallory", 10)

    consumer = Consumer(
        redis_client, group="g", consumer="c1", handlers={TradeExecuted: on_trade},
        settings=FAST, producer="gamification", registry=registry,
    )  # fmt: skip
    await consumer.run(burst=True)

    assert handled == [9]
    assert int(await redis_client.get("xp:u-mallory")) == 10  # only the genuine trade's effect
    dead = await redis_client.xrange(keys.dead_letter_stream(stream))
    assert [fields[b"reason"] for _, fields in dead] == [b"unknown_producer"] * 3
    assert b"'mallory' is not declared" in dead[0][1][b"error"]
    assert b"declared: trading" in dead[0][1][b"error"]
    assert b'"producer":"gamification"' in dead[1][1][b"envelope"]  # kept as written
    assert int((await redis_client.xpending(stream, "g"))["pending"]) == 0  # acked with the DLQ
    assert dead_lettered(registry, stream, "unknown_producer") == 3
    consumed = registry.get_sample_value(
        "astra_bus_consumed_events_total", {"stream": stream, "group": "g"}
    )
    assert consumed == 1


@pytest.mark.integration
async def test_extra_declared_producers_are_applied_and_only_they(
    redis_client: aioredis.Redis,
) -> None:
    relayed = EventType("test", "relayed", 1, Ping, producers=("test", "relay"))
    for producer in ("relay", "test", "other"):
        await redis_client.xadd(
            relayed.stream_key, {keys.ENVELOPE_FIELD: forged(relayed, Ping(n=1), producer)}
        )
    registry = CollectorRegistry()
    producers: list[str] = []

    async def handle(event: Event[Ping], ctx: HandlerContext) -> None:
        producers.append(event.envelope.producer)

    consumer = Consumer(
        redis_client, group="g", consumer="c1", handlers={relayed: handle}, settings=FAST,
        producer="test", registry=registry,
    )  # fmt: skip
    await consumer.run(burst=True)
    assert producers == ["relay", "test"]
    assert dead_lettered(registry, relayed.stream_key, "unknown_producer") == 1


def test_producers_default_to_the_domain_and_are_validated() -> None:
    assert Pinged.producers == ("test",)
    assert TradeExecuted.producers == ("trading",)
    assert EventType("test", "x", 1, Ping, producers=["a", "b", "a"]).producers == ("a", "b")  # type: ignore[arg-type]
    assert TradeExecuted.allows("trading")
    assert not TradeExecuted.allows("users")
    for bad in ("", "has space", "a:b", "{tag}", "x" * 129):
        with pytest.raises(StreamNameError, match="producer"):
            EventType("test", "x", 1, Ping, producers=(bad,))


def test_encode_refuses_an_undeclared_producer() -> None:
    with pytest.raises(EnvelopeError, match="'users' is not a declared producer"):
        encode(TradeExecuted, trade(1), producer="users", correlation_id="c")
    encode(TradeExecuted, trade(1), producer="trading", correlation_id="c")


@pytest.mark.parametrize("service", ["users", "trading", "gamification", "nft"])
def test_each_service_is_a_declared_producer_of_what_it_publishes(service: str) -> None:
    """The real stack keeps working: `ServiceSpec.name` is the producer of its events."""
    spec = importlib.import_module(f"services.{service}.app").SPEC
    assert spec.published, f"{service} declares no published event types"
    for event_type in spec.published:
        assert event_type.allows(spec.name), f"{spec.name} may not publish {event_type}"


def test_the_gateway_is_the_declared_producer_of_the_audit_stream() -> None:
    assert ActionAudited.producers == ("gateway",)


def test_the_catalogue_documents_the_producers() -> None:
    schema = json_schemas(CATALOG)[TradeExecuted.stream_key]
    assert schema["properties"]["producer"]["enum"] == ["trading"]
    doc = asyncapi_document(EventCatalog(TradeExecuted), title="t", version="1")
    operation = doc["operations"]["publish.trading.trade_executed.v1"]
    assert operation["x-producers"] == ["trading"]
    payload = doc["components"]["messages"]["trading.trade_executed.v1"]["payload"]
    assert payload["allOf"][1]["properties"]["producer"]["enum"] == ["trading"]
