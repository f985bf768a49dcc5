"""The capacity search's stepping, the CPU timing of processes, and Locust's ceiling
against a real nginx: the parts `make capacity` reports from."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loadtests import ceiling, cpu
from loadtests.run import capacity_table, locust_commands, parser, search
from tests.support.poll import poll_until_sync


def _stepper(knee: float, seen: list[float]) -> Any:
    def step(rate: float) -> dict[str, Any]:
        seen.append(rate)
        return {"rate": rate, "passed": rate <= knee}

    return step


def test_the_search_doubles_until_a_miss_then_bisects() -> None:
    seen: list[float] = []
    steps = search(_stepper(knee=100, seen=seen), rate=20, max_rate=320, factor=2, refine=2)
    assert seen == [20, 40, 80, 160, 120, 100]
    assert [s["rate"] for s in steps] == [20, 40, 80, 100, 120, 160]
    assert max(s["rate"] for s in steps if s["passed"]) == 100


def test_the_search_stops_at_the_ceiling_it_was_given() -> None:
    seen: list[float] = []
    search(_stepper(knee=1000, seen=seen), rate=20, max_rate=100, factor=2, refine=2)
    assert seen == [20, 40, 80]  # all passed: nothing to bisect, and 160 is above max


def test_a_first_step_that_fails_leaves_no_knee() -> None:
    seen: list[float] = []
    steps = search(_stepper(knee=5, seen=seen), rate=20, max_rate=320, refine=2)
    assert seen == [20]
    assert not any(s["passed"] for s in steps)


def test_the_traders_mix_starts_only_the_trader_class(tmp_path: Path) -> None:
    args = parser().parse_args(["run", "--mix", "traders", "--workers", "1"])
    master, worker = locust_commands(args, "http://127.0.0.1:1", tmp_path)
    assert "Trader" in master
    assert not {"Browser", "Newcomer"} & set(master)
    assert worker[-1] == "Trader"
    args = parser().parse_args(["run"])
    (only,) = locust_commands(args, "http://127.0.0.1:1", tmp_path)
    assert only[-3:] == ["Trader", "Browser", "Newcomer"]


def test_the_orders_mix_runs_placers_from_a_locustfile_holding_only_them(
    tmp_path: Path,
) -> None:
    """A bare `locust -f loadtests/locustfile.py` runs every class the file holds, so
    the order-only persona lives in its own file and the default mix stays the three."""
    args = parser().parse_args(["run", "--mix", "orders"])
    (only,) = locust_commands(args, "http://127.0.0.1:1", tmp_path)
    assert only[-1] == "Placer"
    assert only[only.index("-f") + 1].endswith("orders_locustfile.py")
    listed = subprocess.run(
        [sys.executable, "-m", "locust", "-f", only[only.index("-f") + 1], "--list"],
        capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert listed.stdout.split("Available Users:")[1].split() == ["Placer"]
    # Orders only: Locust merges a base class's tasks, so no read may have crept in
    # (found: a Placer subclassing Trader read four times per order).
    tasks = subprocess.run(
        [sys.executable, "-c", "from loadtests.personas import Placer; "
         "print(' '.join(t.__name__ for t in Placer.tasks))"],
        capture_output=True, text=True, timeout=60, check=True, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert tasks.stdout.split() == ["place_order"]


def test_cpu_time_of_a_busy_process_is_counted_and_an_idle_one_is_not() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with cpu.Sampler({"busy": busy.pid, "idle": idle.pid}, interval=0.2, warmup=0.2) as s:
            poll_until_sync(lambda: s.used()[1] >= 1.0, "a sampled span of 1 s", timeout=10)
        used, wall = s.used()
    finally:
        busy.kill()
        idle.kill()
    assert wall >= 1.0
    assert used["busy"] / wall > 0.5  # it spins a core (shared machine: at least half)
    assert used["idle"] / wall < 0.05
    assert used[cpu.MACHINE] >= used["busy"] * 0.9
    assert cpu.busiest(used, wall, top=1)[0].startswith("busy ")


def test_a_restarted_process_is_left_out_rather_than_guessed() -> None:
    before = cpu.Sample({"a": (5.0, 100.0), "b": (1.0, 100.0)}, machine=10.0)
    after = cpu.Sample({"a": (7.5, 100.0), "b": (0.2, 200.0)}, machine=14.0)
    assert after.minus(before) == {"a": 2.5, cpu.MACHINE: 4.0}


def test_the_capacity_table_names_the_knee_and_the_ceiling() -> None:
    step = {
        "rate": 40, "users": 20, "passed": True, "missed": [], "requests_per_s": 44.0,
        "orders_per_s": 8.0, "locust_cores": 0.1, "stack_cores": 0.6,
        "cores": {"trading-1": 0.31, "gateway-1": 0.15, cpu.MACHINE: 0.8},
        "client_p99_ms": {"write": 150.0}, "server_p99": {"latency_ms": {"write": 140.0}},
    }  # fmt: skip
    failed = {**step, "rate": 80, "passed": False, "missed": ["write-latency"]}
    result = {
        "mix": "traders", "step_seconds": 30, "steps": [step, failed], "knee": step,
        "locust_ceiling": {"users": 40, "requests_per_s": 3800.0, "locust_cores": 1.0,
                           "locust_cpu_ms_per_request": 0.26},
    }  # fmt: skip
    table = capacity_table(result)
    assert "FAIL (write-latency)" in table
    assert "knee: 40 tasks/s = 44.0 req/s, 8.0 orders/s" in table
    assert "trading-1 0.31 cores" in table
    assert "3800 req/s" in table


def test_locusts_ceiling_against_nginx_is_far_above_what_the_stack_takes(
    tmp_path: Path,
) -> None:
    if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
        pytest.skip("nginx is not installed (apt-get install -y nginx)")
    with ceiling.trivial_upstream(tmp_path) as url:
        measured = ceiling.measure(url, tmp_path, users=10, seconds=5)
    assert measured["failures"] == 0
    # The knee of the whole stack on this machine is ~100-200 req/s (bench/README.md);
    # a load generator that could not do several times that would be the bottleneck.
    assert measured["requests_per_s"] > 500, measured
    assert measured["locust_cpu_ms_per_request"] is not None
