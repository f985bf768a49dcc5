"""A real, short load run against a real stack (`astra up`, limits raised for load): its
gate passes while the stack is healthy, and fails, exit code and table, when the
trading service stops answering half way through. The report it writes renders, plots
and all, in headless Chromium."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtests.run import LOAD_LIMITS
from tests.support.browser import assert_drawn, screenshot
from tests.support.poll import poll_until_sync
from tests.support.stack import ROOT, Stack, running_stack

pytestmark = pytest.mark.e2e

SECONDS = 16  # each run; with pool, settle and Locust's start about 30 s of wall clock


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The drill profile (`astra up --drill`: time-compressed SLO alerts), so the healthy
    # run also shows the alerts stay quiet under nominal load (`make load-verify`).
    env = {
        **LOAD_LIMITS,
        "ASTRA_DRILL": "true",
        # A stopped trading instance fails calls in 2 s, not the default 10: well inside
        # one short run, so the stopped-trading run sees its 504s and then the breaker.
        "ASTRA_UPSTREAM__TOTAL_TIMEOUT": "2",
    }
    with running_stack(tmp_path_factory.mktemp("load"), env) as stack:
        yield stack


def _start(stack: Stack, out: Path, run_id: str, rate: int = 10) -> subprocess.Popen[str]:
    argv = [
        sys.executable, "-m", "loadtests", "run",
        "--shape", "steady", "--users", str(max(6, rate // 2)), "--rate", str(rate),
        "--seconds", str(SECONDS),
        "--host", stack.url("gateway-1"), "--stack-dir", str(stack.run_dir),
        "--out", str(out), "--run-id", run_id,
    ]  # fmt: skip
    if stack.has("prometheus"):
        argv += ["--prometheus", stack.url("prometheus")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _summary(out: Path, run_id: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((out / run_id / "summary.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def healthy_run(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    out = tmp_path_factory.mktemp("runs")
    process = _start(stack, out, "healthy")
    text, _ = process.communicate(timeout=SECONDS + 60)
    return out, text, process.returncode


def test_the_gate_passes_on_a_healthy_stack(healthy_run: tuple[Path, str, int]) -> None:
    out, text, code = healthy_run
    assert code == 0, text
    assert "PASS: every objective met" in text
    summary = _summary(out, "healthy")
    assert summary["passed"]
    assert {"read", "write", "auth"} <= set(summary["classes"])
    assert summary["classes"]["write"]["requests"] > 0
    for name in ("locust_stats.csv", "locust_stats_history.csv", "report.html"):
        assert (out / "healthy" / name).exists(), name


def test_no_alert_fires_under_nominal_load(
    stack: Stack, healthy_run: tuple[Path, str, int]
) -> None:
    if not stack.has("prometheus"):
        pytest.skip("prometheus is not installed (Makefile SYSTEM: prometheus:prometheus)")
    out, text, _ = healthy_run
    assert _summary(out, "healthy")["alerts_fired"] == [], text


def test_every_request_is_named_by_its_route_template(healthy_run: tuple[Path, str, int]) -> None:
    out, _, _ = healthy_run
    names = {
        e["name"]
        for e in json.loads((out / "healthy" / "locust_stats.json").read_text())["entries"]
    }
    assert "/api/v1/trading/orders" in names
    assert all("?" not in n and "0190" not in n for n in names), names


def test_requests_carry_the_runs_correlation_prefix(
    stack: Stack, healthy_run: tuple[Path, str, int]
) -> None:
    logs = (stack.run_dir / "log" / "trading-1.jsonl").read_text()
    assert "load-healthy-trader-" in logs


def test_the_gate_fails_when_trading_stops_during_the_run(stack: Stack, tmp_path: Path) -> None:
    # 30 tasks/s: ~6 writes/s, so the drill page's minimum of 70 write events in its
    # one-minute window is there within the run (stack/slo/rules.py `min_events`).
    process = _start(stack, tmp_path, "stopped", rate=30)
    pid = stack.pid("trading-1")
    log = stack.run_dir / "log" / "trading-1.jsonl"

    def orders_under_way() -> bool:
        # The measured phase has begun once traders' orders of this run reach trading.
        return log.read_text().count("load-stopped-trader-") >= 5 or process.poll() is not None

    poll_until_sync(orders_under_way, "the run's orders reaching trading", timeout=60)
    assert process.poll() is None, "the run ended before trading could be stopped"
    os.kill(pid, signal.SIGSTOP)
    try:
        text, _ = process.communicate(timeout=SECONDS + 90)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert process.returncode == 1, text
    assert "FAIL: objectives missed" in text
    summary = _summary(tmp_path, "stopped")
    missed = {slo["slo"] for slo in summary["slos"] if slo["missed"]}
    assert "write-availability" in missed, text
    row = next(s for s in summary["slos"] if s["slo"] == "write-availability")
    assert row["client"]["status"] == "missed"
    if summary["server_view"] == "available":
        # Prometheus saw it too, or the gate says the views disagree: a 16 s run is a
        # handful of scrapes, and the server window can end before the last errors land.
        assert row["server"]["status"] == "missed" or row["disagree"], text
        # The stack runs the drill profile (windows and `for:` / 60, 1 s intervals): the
        # page that takes minutes in production fires within this 16 s run, live.
        assert "WriteAvailabilityBudgetBurn" in summary["alerts_fired"], text


def test_the_report_renders_with_its_plots(
    healthy_run: tuple[Path, str, int], tmp_path: Path
) -> None:
    out, _, _ = healthy_run
    report = out / "healthy" / "report.html"
    page = report.read_text()
    assert page.count("<img") == 3
    assert page.count("data:image/png;base64,") == 3
    assert_drawn(screenshot(report, tmp_path / "report.png"))
