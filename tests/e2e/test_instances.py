"""Two trading instances under `astra up`: the gateway spreads reads over both, and a
SIGKILLed instance costs clients nothing while the supervisor brings it back."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.support.poll import poll_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack_env() -> dict[str, str]:
    return {"ASTRA_INSTANCES_trading": "2", "ASTRA_MONITORING": "false"}


def served_by(stack: Stack, instance: str) -> int:
    path = stack.run_dir / "log" / f"{instance}.jsonl"
    if not path.exists():
        return 0
    count = 0
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("msg") == "request" and record.get("route") == "/api/v1/trading/markets":
            count += 1
    return count


async def test_reads_spread_and_survive_an_instance_kill(stack: Stack) -> None:
    gateway = stack.url("gateway-1")
    assert {c["name"] for c in stack.info["children"]} >= {"trading-1", "trading-2"}  # type: ignore[attr-defined]
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:
        for _ in range(60):
            response = await http.get("/api/v1/trading/markets")
            assert response.status_code == 200

        async def both_served() -> Any:
            counts = (served_by(stack, "trading-1"), served_by(stack, "trading-2"))
            return counts if sum(counts) >= 60 else None

        first, second = await poll_until(both_served, "access logs of both instances", 10)
        assert first >= 10
        assert second >= 10  # least-outstanding with two choices spreads the load

        os.kill(stack.pid("trading-2"), signal.SIGKILL)
        statuses = [(await http.get("/api/v1/trading/markets")).status_code for _ in range(40)]
        assert statuses == [200] * 40  # ejection and one retry on the other instance

        async def restarted() -> Any:
            ready = await http.get("/health/ready")
            body = ready.json()
            return body if ready.status_code == 200 else None

        await poll_until(restarted, "the gateway ready again with trading-2 restarted", 30)
