"""One whole stack (`astra up`, monitoring included when installed) shared by the
observability tests, with a little traffic through the gateway already driven."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.stack import ROOT, Stack, running_stack


@dataclass
class Traffic:
    """What the fixture did through the gateway: one user, one order."""

    username: str
    order: dict[str, Any]
    order_correlation_id: str  # the X-Correlation-ID the order request carried


@dataclass
class ObservedStack:
    stack: Stack
    traffic: Traffic
    log: Path

    @property
    def run_dir(self) -> Path:
        return self.stack.run_dir

    def has(self, name: str) -> bool:
        return any(c["name"] == name for c in self.stack.info["children"])  # type: ignore[attr-defined]

    def prometheus(self) -> str:
        if not self.has("prometheus"):
            pytest.skip("prometheus is not installed (Makefile SYSTEM: prometheus:prometheus)")
        return self.stack.url("prometheus")

    def astra(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stack.cli", *args],
            env={**os.environ, "ASTRA_RUN_DIR": str(self.run_dir), "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def drive_traffic(gateway: str) -> Traffic:
    """Register, log in and buy through the gateway, plus a few 404s with raw IDs in paths."""
    name = f"obs{random.randrange(10**6)}"
    password = "correct horse 1"
    with httpx.Client(base_url=gateway, timeout=10) as http:
        created = http.post(
            "/api/v1/users/register",
            json={"username": name, "email": f"{name}@example.com", "password": password},
        )
        assert created.status_code == 201, created.text
        login = http.post("/api/v1/users/login", json={"username": name, "password": password})
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        markets = http.get("/api/v1/trading/markets")
        assert markets.status_code == 200, markets.text
        cid = f"obs-order-{name}"
        order = http.post(
            "/api/v1/trading/orders",
            json={"symbol": markets.json()[0]["symbol"], "side": "buy", "quantity": "1"},
            headers={**auth, "X-Correlation-ID": cid},
        )
        assert order.status_code == 201, order.text
        # raw IDs in paths: the metrics must still name only route templates
        order_id = order.json()["order_id"]
        assert http.get(f"/api/v1/trading/orders/{order_id}", headers=auth).status_code == 200
        http.get("/api/v1/trading/orders/0b7c4a1e-0000-4000-8000-000000000000", headers=auth)
        http.get(f"/api/v1/nft/collection/{random.randrange(10**9)}", headers=auth)
        http.get(f"/no/such/{name}")
        http.get("/api/v1/gamification/profile", headers=auth)
        http.get("/api/v1/social/feed", params={"user": name})
    return Traffic(name, order.json(), cid)


@pytest.fixture(scope="session")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObservedStack]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it: scripts/require.sh)")
    tmp = tmp_path_factory.mktemp("observed")
    with running_stack(tmp, {"ASTRA_BUS__METRICS_SAMPLE_INTERVAL_MS": "500"}) as stack:
        traffic = drive_traffic(stack.url("gateway-1"))
        yield ObservedStack(stack, traffic, stack.log)
