"""The Locust entry point: `locust -f loadtests/locustfile.py` (what `python -m loadtests`
runs, headless; `make load-ui` runs it with the web UI on 127.0.0.1).

The personas come from `loadtests.personas`; the shape from `ASTRA_LOAD_SHAPE`
(`loadtests.shapes`, bounded by `ASTRA_LOAD_SECONDS`). At the end the master (or the
local runner) writes `ASTRA_LOAD_OUT`: Locust's own per-route statistics (request
counts, failures by kind, the response-time histogram) and a per-second timeline per
SLO class, which workers send to the master with their reports.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `locust -f` from anywhere

from locust import LoadTestShape, events
from locust.env import Environment
from locust.runners import WorkerRunner

from loadtests import shapes
from loadtests.personas import Browser, Newcomer, Trader
from loadtests.routes import slo_class_of

__all__ = ["Browser", "Newcomer", "RunShape", "Trader"]

# (second, slo class) -> [requests, errors (5xx, no answer), throttled (429), {ms: n}]
Bucket = list[Any]
_timeline: dict[tuple[int, str], Bucket] = defaultdict(lambda: [0, 0, 0, defaultdict(int)])


class RunShape(LoadTestShape):
    """The shape `ASTRA_LOAD_SHAPE` names, for `ASTRA_LOAD_USERS` over `ASTRA_LOAD_SECONDS`."""

    plan = shapes.Plan(
        users=max(1, int(os.environ.get("ASTRA_LOAD_USERS", "10"))),
        seconds=float(os.environ.get("ASTRA_LOAD_SECONDS", "60")),
    )
    shape = staticmethod(shapes.SHAPES[os.environ.get("ASTRA_LOAD_SHAPE", "steady")])

    def tick(self) -> tuple[int, float] | None:
        elapsed: float = self.get_run_time()  # type: ignore[no-untyped-call]
        return self.shape(self.plan, elapsed)


def _rounded(ms: float) -> int:
    """As Locust rounds response times into its histogram (locust.stats)."""
    if ms < 100:
        return round(ms)
    if ms < 1000:
        return int(round(ms, -1))
    if ms < 10000:
        return int(round(ms, -2))
    return int(round(ms, -3))


def _on_request(
    request_type: str, name: str, response_time: float, response: Any = None, **_: Any
) -> None:
    slo_class = slo_class_of(request_type, name) or "other"
    bucket = _timeline[(int(time.time()), slo_class)]
    code = int(getattr(response, "status_code", 0) or 0)
    bucket[0] += 1
    bucket[1] += code == 0 or code >= 500
    bucket[2] += code == 429
    bucket[3][_rounded(response_time or 0)] += 1


def _drain() -> list[list[Any]]:
    rows = [[sec, cls, b[0], b[1], b[2], dict(b[3])] for (sec, cls), b in _timeline.items()]
    _timeline.clear()
    return rows


def _to_master(client_id: str, data: dict[str, Any]) -> None:
    data["astra_timeline"] = _drain()


def _from_worker(client_id: str, data: dict[str, Any]) -> None:
    for sec, cls, n, errors, throttled, hist in data.get("astra_timeline", []):
        bucket = _timeline[(int(sec), str(cls))]
        bucket[0] += n
        bucket[1] += errors
        bucket[2] += throttled
        for ms, count in hist.items():
            bucket[3][int(ms)] += count


def _write_out(environment: Environment, **_: Any) -> None:
    out = os.environ.get("ASTRA_LOAD_OUT")
    if not out or isinstance(environment.runner, WorkerRunner):
        return
    stats = environment.stats
    doc = {
        "entries": [
            {
                "method": e.method,
                "name": e.name,
                "num_requests": e.num_requests,
                "num_failures": e.num_failures,
                "response_times": {str(k): v for k, v in e.response_times.items()},
            }
            for e in stats.entries.values()
        ],
        "errors": [
            {
                "method": e.method,
                "name": e.name,
                "error": str(e.error),
                "occurrences": e.occurrences,
            }
            for e in stats.errors.values()
        ],
        "start_time": stats.start_time,
        "last_request": stats.last_request_timestamp,
        "timeline": sorted(_drain()),
    }
    Path(out).write_text(json.dumps(doc))


# Registered by calls, not decorators: Locust's `add_listener` is untyped.
for _hook, _listener in (
    (events.request, _on_request),
    (events.report_to_master, _to_master),
    (events.worker_report, _from_worker),
    (events.quitting, _write_out),
):
    _hook.add_listener(_listener)  # type: ignore[no-untyped-call]
