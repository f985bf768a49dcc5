"""The service app factory against a real uvicorn, a real redis-server and SQLite."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field
from sqlalchemy import Column, Integer, MetaData, Table

from backbone.bus.consumer import Event, HandlerContext
from backbone.config import BusSettings
from backbone.outbox import outbox_table
from backbone.registry import Discovery
from backbone.service import (
    ConsumerSpec,
    ContextSpec,
    OutboxParts,
    ProblemError,
    Runtime,
    ServiceSettings,
    ServiceSpec,
    SqlParts,
    context_dependency,
)
from backbone.service.app import create_service_app
from stack.redis_server import RedisServer
from tests.support.asgi_server import serve_app
from tests.support.events import Ping, Pinged
from tests.support.poll import poll_until
from tests.support.settings import FAST_REGISTRY

pytestmark = pytest.mark.integration

metadata = MetaData()
things = Table("things", metadata, Column("id", Integer, primary_key=True))
outbox_table(metadata)
router = APIRouter()


class ThingIn(BaseModel):
    n: int = Field(ge=0, le=10)


@router.get("/items/{item_id}")
async def get_item(item_id: int) -> dict[str, int]:
    if item_id == 13:
        raise ProblemError(409, "Unlucky", "13 is taken")
    if item_id == 500:
        raise RuntimeError("secret internals")
    return {"item_id": item_id}


@router.post("/items")
async def post_item(body: ThingIn) -> dict[str, int]:
    return {"n": body.n}


DemoParts = OutboxParts[ServiceSettings]


def make_spec(handled: list[int]) -> ServiceSpec[ServiceSettings, DemoParts]:
    async def on_ping(event: Event[Ping], ctx: HandlerContext) -> None:
        handled.append(event.data.n)

    async def build(parts: DemoParts) -> DemoParts:
        return parts  # the parts themselves are this demo's context

    def consumers(parts: DemoParts) -> list[ConsumerSpec]:
        return [ConsumerSpec("demo_group", {Pinged: on_ping})]

    return ServiceSpec(
        name="demo",
        routers=[router],
        context=ContextSpec.with_outbox(metadata, build),
        consumers=consumers,
    )


def settings_for(redis_url: str, tmp_path: Path, port: int) -> ServiceSettings:
    return ServiceSettings(
        service="demo",
        instance_id="demo-1",
        port=port,
        redis_url=redis_url,
        run_dir=tmp_path,
        bus=BusSettings(block_ms=50),
        registry=FAST_REGISTRY,
    )


async def test_service_lifecycle_health_metrics_and_problems(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    from stack.netutil import free_port

    port = free_port()
    settings = settings_for(redis_server.url, tmp_path, port)
    registry = CollectorRegistry()
    handled: list[int] = []
    app = create_service_app(make_spec(handled), settings, registry=registry)
    watcher = aioredis.Redis.from_url(redis_server.url)
    discovery = Discovery(
        watcher, settings.registry, services=["demo"], registry=CollectorRegistry()
    )
    await discovery.start()
    try:
        async with serve_app(app, port) as base, httpx.AsyncClient(base_url=base) as http:
            await poll_until(
                lambda: _async(len(discovery.instances("demo")) == 1), "registered", timeout=5
            )
            assert discovery.instances("demo")[0].url == f"http://127.0.0.1:{port}"

            live = await http.get("/health/live")
            assert live.json()["status"] == "ok"
            ready = await http.get("/health/ready")
            assert ready.status_code == 200
            assert ready.json()["checks"] == {
                "redis": "ok",
                "database": "ok",
                "consumer:demo_group": "ok",
            }

            ok = await http.get("/items/7", headers={"X-Correlation-ID": "abc-123"})
            assert ok.json() == {"item_id": 7}
            assert ok.headers["x-correlation-id"] == "abc-123"
            bad_cid = await http.get("/items/7", headers={"X-Correlation-ID": "a b\tc"})
            assert bad_cid.headers["x-correlation-id"] not in ("a b\tc", "")

            conflict = await http.get("/items/13")
            assert conflict.status_code == 409
            assert conflict.headers["content-type"] == "application/problem+json"
            assert conflict.json()["detail"] == "13 is taken"
            assert conflict.json()["correlation_id"] == conflict.headers["x-correlation-id"]

            crash = await http.get("/items/500")
            assert crash.status_code == 500
            assert crash.headers["content-type"] == "application/problem+json"
            assert "secret internals" not in crash.text
            assert "Traceback" not in crash.text

            invalid = await http.post("/items", content=b"{not json")
            assert invalid.status_code == 422
            assert invalid.headers["content-type"] == "application/problem+json"
            too_big = await http.post("/items", json={"n": 11})
            assert too_big.status_code == 422
            assert too_big.json()["errors"][0]["loc"] == ["body", "n"]
            missing = await http.get("/nope")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"

            # The consumer group runs inside the service.
            await watcher.xadd(
                Pinged.stream_key,
                {"envelope": _envelope(5)},
            )
            await poll_until(lambda: _async(handled == [5]), "consumer handled the event", 5)

            metrics = (await http.get("/metrics")).text
            assert 'route="/items/{item_id}"' in metrics
            assert 'route="/items/7"' not in metrics  # never raw paths as label values
            assert 'route="<unmatched>",slo_class="none",status="404"' in metrics
            assert "astra_bus_consumed_events_total" in metrics
            openmetrics = await http.get(
                "/metrics", headers={"Accept": "application/openmetrics-text"}
            )
            assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")

            redis_server.kill()
            not_ready = await http.get("/health/ready")
            assert not_ready.status_code == 503
            assert not_ready.headers["content-type"] == "application/problem+json"
            assert "redis: unreachable" in not_ready.json()["detail"]
    finally:
        await discovery.aclose()
        await watcher.aclose()


async def test_instance_deregisters_on_shutdown(redis_server: RedisServer, tmp_path: Path) -> None:
    from stack.netutil import free_port

    port = free_port()
    settings = settings_for(redis_server.url, tmp_path, port)
    app = create_service_app(make_spec([]), settings, registry=CollectorRegistry())
    redis = aioredis.Redis.from_url(redis_server.url)
    discovery = Discovery(redis, settings.registry, services=["demo"], registry=CollectorRegistry())
    await discovery.start()
    try:
        async with serve_app(app, port):
            await poll_until(lambda: _async(bool(discovery.instances("demo"))), "registered", 5)
        await discovery.refresh()
        assert discovery.instances("demo") == ()  # gone at once, not after a TTL
    finally:
        await discovery.aclose()
        await redis.aclose()


@dataclass
class Demo:
    """A context that records what was done with it."""

    parts: DemoParts
    log: list[str] = field(default_factory=list)


class Other:
    """Not the demo's context: asking for it is a bug, and a 500."""


DemoContext = Annotated[Demo, Depends(context_dependency(Demo))]
OtherContext = Annotated[Other, Depends(context_dependency(Other))]


async def test_one_context_reaches_routes_hooks_and_consumers_in_order(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    from stack.netutil import free_port

    port = free_port()
    settings = settings_for(redis_server.url, tmp_path, port)
    redis = aioredis.Redis.from_url(redis_server.url)
    discovery = Discovery(redis, settings.registry, services=["demo"], registry=CollectorRegistry())
    built: list[Demo] = []

    async def registered() -> bool:
        await discovery.refresh()
        return bool(discovery.instances("demo"))

    async def build(parts: DemoParts) -> Demo:
        # Everything before the hooks is open: the tables exist, the relay runs.
        async with parts.sessions() as session:
            await session.execute(things.select())
        demo = Demo(parts, ["build"])
        built.append(demo)
        return demo

    async def on_start(ctx: Demo) -> None:
        ctx.log.append(f"on_start registered={await registered()}")

    def consumers(ctx: Demo) -> list[ConsumerSpec]:
        ctx.log.append("consumers")
        return [ConsumerSpec("demo_group", {Pinged: on_ping})]

    async def on_ping(event: Event[Ping], ctx: HandlerContext) -> None:
        pass

    async def on_stop(ctx: Demo) -> None:
        # Closed in reverse: the registrar (opened after this hook's pair) is gone first.
        ctx.log.append(f"on_stop registered={await registered()}")

    demo_router = APIRouter()

    @demo_router.get("/context")
    async def context(ctx: DemoContext) -> dict[str, Any]:
        return {"built": ctx is built[0], "log": ctx.log, "service": ctx.parts.settings.service}

    @demo_router.get("/other")
    async def other(ctx: OtherContext) -> dict[str, str]:
        return {}

    spec = ServiceSpec(
        name="demo",
        context=ContextSpec.with_outbox(metadata, build),
        routers=[demo_router],
        consumers=consumers,
        on_start=on_start,
        on_stop=on_stop,
    )
    runtime = Runtime(spec, settings, CollectorRegistry())
    with pytest.raises(RuntimeError, match="has not started"):
        _ = runtime.context
    await runtime.redis.aclose()

    app = create_service_app(spec, settings, registry=CollectorRegistry())
    try:
        async with serve_app(app, port) as base, httpx.AsyncClient(base_url=base) as http:
            await poll_until(registered, "registered after the hooks", timeout=5)
            answer = await http.get("/context")
            assert answer.json() == {
                "built": True,
                "log": ["build", "on_start registered=False", "consumers"],
                "service": "demo",
            }
            wrong = await http.get("/other")
            assert wrong.status_code == 500
            assert wrong.headers["content-type"] == "application/problem+json"
        assert len(built) == 1
        assert built[0].log[-1] == "on_stop registered=False"
    finally:
        await discovery.aclose()
        await redis.aclose()


async def test_a_database_without_an_outbox(redis_server: RedisServer, tmp_path: Path) -> None:
    async def build(parts: SqlParts[ServiceSettings]) -> SqlParts[ServiceSettings]:
        return parts

    spec = ServiceSpec(name="demo", context=ContextSpec.with_database(metadata, build))
    runtime = Runtime(spec, settings_for(redis_server.url, tmp_path, 0), CollectorRegistry())
    try:
        await runtime.start()
        assert type(runtime.context) is SqlParts  # no relay runs: nothing was declared
        assert await runtime.checks() == {"redis": "ok", "database": "ok"}
    finally:
        await runtime.aclose()


def _envelope(n: int) -> bytes:
    from backbone.bus.envelope import encode

    return encode(Pinged, Ping(n=n), producer="test", correlation_id="c")[1]


async def _async(value: Any) -> Any:
    return value
