"""Drills against a real stack in chaos mode (the fault proxy on every hop, the drill
profile's alerts): the fast subset passes with its defences on, a drill fails with its
defence off, and a runner killed with SIGTERM mid-fault leaves no toxic and no stopped
process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from loadtests.run import LOAD_LIMITS
from tests.support.poll import poll_until_sync
from tests.support.stack import ROOT, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


def _drills(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drills", "run", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _journal(out: Path, run_id: str, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((out / run_id / f"{name}.json").read_text())
    return loaded


def _require_prometheus() -> None:
    if not (Path("/usr/bin/prometheus").exists() or Path("/usr/sbin/prometheus").exists()):
        pytest.skip("prometheus is not installed: the drills judge through it")


@pytest.mark.timeout(900)  # three drills, each on a stack of its own: about 3 minutes
def test_the_fast_drills_pass_with_their_defences_on(tmp_path: Path) -> None:
    _require_prometheus()
    done = _drills("--fast", "--out", str(tmp_path), "--run-id", "fast")
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("clean", "trading-latency", "redis-down-trading"):
        journal = _journal(tmp_path, "fast", name)
        assert journal["status"] == "passed", (name, journal["problems"])
        assert journal["accounting"]["exact"], (name, journal["accounting"])
        assert journal["accounting"]["orders_accepted"] > 0
        assert all(r["status"] == "succeeded" for r in journal["rollbacks"]), name
    latency = _journal(tmp_path, "fast", "trading-latency")
    (breaker,) = latency["alerts"]["expected"]
    assert breaker["name"] == "GatewayBreakerOpen"
    assert breaker["fired_after"] is not None
    assert _journal(tmp_path, "fast", "clean")["alerts"]["unexpected"] == []
    assert (tmp_path / "fast" / "index.html").exists()


@pytest.mark.timeout(300)
def test_a_drill_fails_with_its_defence_off(tmp_path: Path) -> None:
    _require_prometheus()
    done = _drills(
        "redis-down-trading", "--without-defence", "--out", str(tmp_path), "--run-id", "off"
    )
    journal = _journal(tmp_path, "off", "redis-down-trading.without-defence")
    # Exit 0: it ended as it must, `failed`. Without the outbox, trading publishes after
    # the commit; while its Redis is cut those events are lost, and the accounting,
    # read back through the API and the stream, finds the orders without their events.
    assert done.returncode == 0, done.stdout + done.stderr
    assert journal["status"] == "failed"
    assert journal["without_defence"]
    assert journal["accounting"]["lost"] > 0, journal["accounting"]
    assert not journal["accounting"]["exact"]


def _proxies(api: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{api}/proxies", timeout=5).json()
    return found


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


@pytest.mark.timeout(300)
def test_a_runner_killed_mid_fault_leaves_nothing_behind(tmp_path: Path) -> None:
    _require_prometheus()
    drills = tmp_path / "drills"
    drills.mkdir()
    hypothesis = [{"name": "markets", "kind": "http", "path": "/api/v1/trading/markets",
                   "tolerance": {"min": 0.0}}]  # fmt: skip
    common = {"description": "Interrupted on purpose by the test.", "duration_seconds": 60,
              "baseline_seconds": 5, "hypothesis": hypothesis,
              "defence": {"name": "none"}, "load": {"rate": 5, "users": 2}}  # fmt: skip
    (drills / "held-toxic.yaml").write_text(yaml.safe_dump({
        "id": "held-toxic", "title": "A toxic held for a minute", **common,
        "target": {"proxies": ["gateway_trading-*"]},
        "fault": {"kind": "toxic", "toxic": {"type": "latency", "attributes": {"latency": 300}}},
    }))  # fmt: skip
    (drills / "held-pause.yaml").write_text(yaml.safe_dump({
        "id": "held-pause", "title": "trading paused for a minute", **common,
        "target": {"processes": ["trading-1"]},
        "fault": {"kind": "signal", "signal": "SIGSTOP"},
    }))  # fmt: skip
    env = {**LOAD_LIMITS, "ASTRA_CHAOS": "true", "ASTRA_DRILL": "true"}
    (tmp_path / "stack").mkdir()
    with running_stack(tmp_path / "stack", env) as stack:
        api = stack.info["chaos"]["api"]
        trading = stack.pid("trading-1")
        for name, injected in (
            ("held-toxic", lambda: any(p["toxics"] for p in _proxies(api).values())),
            ("held-pause", lambda: _state(trading) == "T"),
        ):
            runner = subprocess.Popen(
                [sys.executable, "-m", "drills", "run", name, "--stack-dir", str(stack.run_dir),
                 "--drills-dir", str(drills), "--out", str(tmp_path / "out")],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            try:
                poll_until_sync(injected, f"{name}: the fault in place", timeout=90, interval=0.2)
            finally:
                runner.send_signal(signal.SIGTERM)
                output, _ = runner.communicate(timeout=90)
            assert runner.returncode == 130, output
            proxies = _proxies(api)
            assert not any(p["toxics"] for p in proxies.values()), proxies
            assert all(p["enabled"] for p in proxies.values())
            assert _state(trading) != "T", f"{name}: trading-1 left stopped"
