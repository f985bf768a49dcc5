"""Scrape targets follow the registry: a real redis-server, real registrars, the real
discovery process, and Prometheus' http_sd JSON read over HTTP."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from backbone.config import RegistrySettings
from backbone.registry import InstanceInfo, Registrar
from stack.netutil import free_port
from tests.support.poll import poll_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHILD = ROOT / "tests" / "backbone" / "registry_child.py"
TOKEN = "test-registry-token"
HEARTBEAT, TTL, POLL, GRACE = 0.3, 1.0, 0.2, 3.0
SETTINGS = RegistrySettings(
    heartbeat_seconds=HEARTBEAT,
    ttl_seconds=TTL,
    poll_seconds=POLL,
    expired_grace_seconds=GRACE,
    token=TOKEN,
)


@pytest.fixture
async def sd_url(redis_url: str, tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "ASTRA_REDIS_URL": redis_url,
        "ASTRA_RUN_DIR": str(tmp_path),
        "ASTRA_REGISTRY__HEARTBEAT_SECONDS": str(HEARTBEAT),
        "ASTRA_REGISTRY__TTL_SECONDS": str(TTL),
        "ASTRA_REGISTRY__POLL_SECONDS": str(POLL),
        "ASTRA_REGISTRY__EXPIRED_GRACE_SECONDS": str(GRACE),
        "ASTRA_REGISTRY__TOKEN": TOKEN,
        "PYTHONPATH": str(ROOT),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stack.observe.sd", "--port", str(port), env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as http:

            async def ready() -> bool:
                assert process.returncode is None, "discovery process exited"
                try:
                    return (await http.get(f"{url}/health/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await poll_until(ready, "the discovery process to be ready", timeout=15)
        yield url
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0


async def spawn_child(redis_url: str, service: str, instance_id: str) -> Any:
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), redis_url, service, instance_id, str(HEARTBEAT), str(TTL),
        TOKEN, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), 20)
    assert line.strip() == b"registered", line
    return child


async def test_targets_follow_the_registry(sd_url: str, redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    gateway = Registrar(
        client,
        InstanceInfo(
            service="gateway",
            instance_id="gateway-1",
            url="http://127.0.0.1:18000",
            version="t",
            status="ready",
        ),
        SETTINGS,
    )
    child = None
    try:
        async with httpx.AsyncClient(timeout=2) as http:

            async def groups() -> dict[str, dict[str, Any]]:
                response = await http.get(f"{sd_url}/targets")
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("application/json")
                return {g["labels"]["instance"]: g for g in response.json()}

            assert await groups() == {}
            appeared = time.monotonic()
            await gateway.start()
            child = await spawn_child(redis_url, "trading", "trading-7")
            found = await poll_until(
                lambda: _with(groups, {"gateway-1", "trading-7"}), "both targets", timeout=15
            )
            assert time.monotonic() - appeared < 15
            assert found["gateway-1"]["targets"] == ["127.0.0.1:18000"]
            assert found["gateway-1"]["labels"]["service"] == "gateway"
            assert found["trading-7"]["labels"]["service"] == "trading"
            assert found["trading-7"]["targets"] == ["127.0.0.1:9"]

            assert found["trading-7"]["labels"]["__meta_astra_lapsed"] == "false"

            child.kill()  # SIGKILL: no deregistration, only the TTL tells
            await child.wait()
            killed = time.monotonic()

            # Lapsed, not gone: still a target (its failing scrape says `up == 0`), for
            # the grace; a process that only lost Redis would still be scraped.
            async def trading_lapsed() -> dict[str, Any] | None:
                group = (await groups()).get("trading-7")
                lapsed = group is not None and group["labels"]["__meta_astra_lapsed"] == "true"
                return group if lapsed else None

            await poll_until(trading_lapsed, "the killed instance to lapse", timeout=15)

            async def trading_gone() -> bool:
                return "trading-7" not in await groups()

            await poll_until(trading_gone, "the killed instance to disappear", timeout=15)
            assert time.monotonic() - killed >= TTL + GRACE - 1  # listed for the grace
            assert time.monotonic() - killed < 15
            assert set(await groups()) == {"gateway-1"}
    finally:
        if child is not None and child.returncode is None:
            child.kill()
            await child.wait()
        await gateway.aclose()
        await client.aclose()


async def _with(groups: Any, wanted: set[str]) -> dict[str, dict[str, Any]] | None:
    found: dict[str, dict[str, Any]] = await groups()
    return found if wanted <= set(found) else None


async def test_alert_webhook_appends_to_alerts_jsonl(sd_url: str, tmp_path: Path) -> None:
    notification = {
        "version": "4",
        "status": "firing",
        "receiver": "astra-webhook",
        "alerts": [{"status": "firing", "labels": {"alertname": "GatewayErrorBudgetBurn"}}],
    }
    async with httpx.AsyncClient(timeout=2) as http:
        response = await http.post(f"{sd_url}/alerts", json=notification)
        assert response.status_code == 200
        assert (await http.post(f"{sd_url}/alerts", content=b"{nope")).status_code == 400
    lines = (tmp_path / "alerts.jsonl").read_bytes().splitlines()
    assert len(lines) == 1
    recorded = orjson.loads(lines[0])
    assert recorded["alerts"][0]["labels"]["alertname"] == "GatewayErrorBudgetBurn"
    assert "received_at" in recorded
