"""Gateway fixtures: real upstream HTTP apps registered in a real Redis, real gateways.

upstream = await upstreams("users", "users-1")        # aiohttp.web app, registered ready
async with gateway_at(redis_url) as base_url: ...      # create_app under uvicorn
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry

from backbone.config import BusSettings, RegistrySettings
from backbone.registry import InstanceInfo, Registrar
from gateway.app import create_app
from gateway.config import GatewaySettings
from stack.netutil import free_port
from tests.support.asgi_server import serve_app
from tests.support.poll import poll_until
from tests.support.settings import TEST_OPERATOR_TOKEN, TEST_REGISTRY_TOKEN


@asynccontextmanager
async def serve_edge(app: object, port: int) -> AsyncIterator[str]:
    """`serve_app`, but as `python -m gateway` runs uvicorn: the gateway is the edge,
    so uvicorn must not take the client address from X-Forwarded-For."""
    async with serve_app(app, port, proxy_headers=False) as url:
        yield url


FAST_REGISTRY = RegistrySettings(
    heartbeat_seconds=0.2, ttl_seconds=0.6, poll_seconds=0.1, token=TEST_REGISTRY_TOKEN
)
FAST_BUS = BusSettings(block_ms=50, reaper_interval_ms=200)


@dataclass
class Upstream:
    """A small real HTTP service; `mode` says how it answers (ok, fail, slow)."""

    service: str
    name: str
    port: int
    mode: str = "ok"
    delay: float = 1.0
    seen: list[dict[str, Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    registrar: Registrar | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            {"method": request.method, "path": request.path_qs, "headers": dict(request.headers)}
        )
        if self.mode == "fail":
            return web.json_response({"error": "boom"}, status=500)
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        payload = {"instance": self.name, "path": request.path_qs, "body": body.decode()}
        headers = {"Cache-Control": request.query["cache"]} if "cache" in request.query else None
        return web.Response(
            text=json.dumps(payload), content_type="application/json", headers=headers
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def kill(self) -> None:
        """Stop answering, but leave the registration beating (a hung or crashed host)."""
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()


UpstreamFactory = Callable[..., Awaitable[Upstream]]


@pytest.fixture
async def upstreams(redis_url: str) -> AsyncIterator[UpstreamFactory]:
    redis = aioredis.Redis.from_url(redis_url)
    made: list[Upstream] = []

    async def make(service: str, name: str, **kwargs: Any) -> Upstream:
        upstream = Upstream(service, name, free_port(), **kwargs)
        await upstream.start()
        upstream.registrar = Registrar(
            redis,
            InstanceInfo(
                service=service, instance_id=name, url=upstream.url, version="1", status="ready"
            ),
            FAST_REGISTRY,
            registry=CollectorRegistry(),
        )
        await upstream.registrar.start()
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        if upstream.registrar is not None:
            await upstream.registrar.aclose()
        await upstream.kill()
    await redis.aclose()


GatewayAt = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
def gateway_at() -> GatewayAt:
    @asynccontextmanager
    async def run(redis_url: str, **overrides: Any) -> AsyncIterator[str]:
        port = free_port()
        values: dict[str, Any] = {
            "port": port,
            "redis_url": redis_url,
            "registry": FAST_REGISTRY,
            "operator_token": TEST_OPERATOR_TOKEN,
            "bus": FAST_BUS,
            "services": ("users", "trading"),
            "instance_id": f"gateway-{port}",
            # Everything public unless a test says otherwise (tests/gateway/test_auth.py).
            "public_routes": ("GET /api/v1", "HEAD /api/v1", "POST /api/v1"),
        }
        tracer = overrides.pop("tracer", None)
        values.update(overrides)
        app = create_app(GatewaySettings(**values), registry=CollectorRegistry(), tracer=tracer)
        async with serve_edge(app, port) as url:
            yield url

    return run


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def until_routed(http: aiohttp.ClientSession, url: str, count: int = 1) -> None:
    """Wait until the gateway's discovery sees the upstream (a GET answers 200; for its
    readiness, "ready": "degraded" is a 200 too, with some service still missing)."""

    async def check() -> bool:
        async with http.get(url) as response:
            body = await response.read()
            if response.status != 200:
                return False
            return not url.endswith("/health/ready") or b'"status":"ready"' in body

    await poll_until(check, f"{url} routed", timeout=5)


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits
