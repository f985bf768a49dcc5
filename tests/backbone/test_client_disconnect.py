"""A client that leaves mid-body is recorded as 499, never as a server error (a service)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from fastapi import APIRouter, Request
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from backbone.service import ServiceSettings, ServiceSpec
from backbone.service.app import create_service_app
from stack.netutil import free_port
from tests.support.asgi_server import serve_app
from tests.support.poll import poll_until
from tests.support.settings import FAST_BUS, FAST_REGISTRY

pytestmark = pytest.mark.integration

router = APIRouter()


class OrderIn(BaseModel):
    note: str


@router.post("/orders")
async def create_order(body: OrderIn) -> dict[str, str]:
    return {"note": body.note}


@router.post("/raw")
async def raw(request: Request) -> dict[str, int]:
    return {"bytes": len(await request.body())}  # raises ClientDisconnect when gone


async def post_half_and_leave(port: int, path: str) -> None:
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n".encode()
        + b'{"note": "'
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()


def statuses(registry: CollectorRegistry, route: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for metric in registry.collect():
        if metric.name != "astra_http_server_requests":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels["route"] == route:
                found[sample.labels["status"]] = sample.value
    return found


async def test_a_client_leaving_mid_body_is_499(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    settings = ServiceSettings(
        service="demo",
        instance_id="demo-1",
        port=port,
        redis_url=redis_url,
        run_dir=tmp_path,
        bus=FAST_BUS,
        registry=FAST_REGISTRY,
    )
    registry = CollectorRegistry()
    app = create_service_app(
        ServiceSpec(name="demo", routers=[router]), settings, registry=registry
    )
    with caplog.at_level(logging.INFO, logger="astra.access"):
        async with serve_app(app, port):
            for path in ("/orders", "/raw"):
                await post_half_and_leave(port, path)

                async def recorded(route: str = path) -> dict[str, float]:
                    return statuses(registry, route)

                seen = await poll_until(recorded, f"{path} recorded", timeout=5)
                assert seen == {"499": 1.0}, seen
    access = [r for r in caplog.records if r.name == "astra.access"]
    lines = [r for r in access if getattr(r, "route", "") in ("/orders", "/raw")]
    assert [getattr(r, "status", None) for r in lines] == [499, 499]
    # Not "Exception in ASGI application" from uvicorn: nothing failed.
    assert not [r for r in caplog.records if r.name == "uvicorn.error" and r.levelno >= 40]
