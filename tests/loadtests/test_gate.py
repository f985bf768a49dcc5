"""The gate's arithmetic, the shapes' bounds and the runner's refusals: no stack, no Locust."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.gate import ClassStats, Prometheus, Reading, client_view, judge, server_view
from loadtests.outcomes import CLIENT_ERROR, NO_ANSWER, SERVER_ERROR, THROTTLED
from loadtests.routes import slo_class_of
from loadtests.run import check, parser
from loadtests.shapes import SHAPES, Plan
from stack.slo.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec(ROOT / "alerts" / "slos.yaml")


def _doc(errors: list[tuple[str, str, str, int]], rt: dict[str, int]) -> dict[str, object]:
    return {
        "entries": [
            {
                "method": "POST",
                "name": "/api/v1/trading/orders",
                "num_requests": sum(rt.values()),
                "num_failures": sum(e[3] for e in errors),
                "response_times": rt,
            }
        ],
        "errors": [
            {"method": m, "name": n, "error": f"CatchResponseError('{e}')", "occurrences": k}
            for m, n, e, k in errors
        ],
    }


def test_request_names_map_to_their_routes_slo_class() -> None:
    assert slo_class_of("POST", "/api/v1/trading/orders") == "write"
    assert slo_class_of("GET", "/api/v1/trading/orders/{order_id}") == "read"
    assert slo_class_of("POST", "/api/v1/users/login") == "auth"
    assert slo_class_of("GET", "/api/v1/trading/orders/0190abc") is None  # raw paths never


def test_client_view_counts_5xx_and_no_answer_but_not_429_or_4xx() -> None:
    orders = "/api/v1/trading/orders"
    doc = _doc(
        [
            ("POST", orders, SERVER_ERROR, 3),
            ("POST", orders, NO_ANSWER, 1),
            ("POST", orders, THROTTLED, 5),
            ("POST", orders, CLIENT_ERROR, 2),
        ],
        {"20": 990, "600": 10},
    )
    write = client_view(doc)["write"]
    assert (write.requests, write.errors, write.throttled, write.client_errors) == (1000, 4, 5, 2)
    assert write.share_within(0.5) == pytest.approx(0.99)


def test_a_missed_objective_fails_and_says_by_how_much() -> None:
    doc = _doc([("POST", "/api/v1/trading/orders", SERVER_ERROR, 20)], {"20": 1000})
    verdict = judge(SPEC, client_view(doc), None)
    row = next(r for r in verdict.rows if r.slo == "write-availability")
    assert row.missed
    assert row.client.status == "missed"
    assert not verdict.passed
    table = verdict.table()
    assert "missed by 1.900pp" in table
    assert "server view: unavailable" in table  # judged client side only, and says so
    assert next(r for r in verdict.rows if r.slo == "read-latency").client.status == "no data"


def test_views_that_disagree_are_flagged() -> None:
    classes = {"write": ClassStats("write", requests=1000, histogram={20: 1000})}
    server = {"write-availability": Reading(0.95, 1000).judge(0.999)}
    verdict = judge(SPEC, classes, server, tolerance=2.0)
    assert verdict.disagreements == ["write-availability"]
    assert not verdict.passed  # the server saw it missed
    assert "instrumentation" in verdict.table()


def test_a_healthy_run_passes() -> None:
    classes = {c: ClassStats(c, requests=500, histogram={10: 500}) for c in ("read", "write")}
    verdict = judge(SPEC, classes, None)
    assert verdict.passed
    assert verdict.to_json()["server_view"] == "unavailable"


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_shape_is_bounded_in_time_and_users(name: str) -> None:
    plan = Plan(users=20, seconds=60)
    ticks = [SHAPES[name](plan, t / 2) for t in range(0, 120)]
    assert all(t is not None and 1 <= t[0] <= 20 for t in ticks)
    assert SHAPES[name](plan, 60) is None


def test_the_spike_spikes_and_the_step_steps() -> None:
    plan = Plan(users=20, seconds=100)
    spike = SHAPES["spike"]
    assert spike(plan, 10) == (5, 20.0)
    assert spike(plan, 50) == (20, 20.0)
    steps = [SHAPES["step"](plan, t) for t in (1, 30, 60, 90)]
    assert [s[0] if s else None for s in steps] == [5, 10, 15, 20]


@pytest.mark.parametrize(
    ("argv", "refusal"),
    [
        (["--host", "http://10.0.0.5:8000"], "not a loopback"),
        (["--users", "100000"], "--users"),
        (["--seconds", "999999"], "--seconds"),
        (["--rate", "0"], "--rate"),
    ],
)
def test_the_runner_refuses_unbounded_or_remote_runs(argv: list[str], refusal: str) -> None:
    problem = check(parser().parse_args(["run", *argv]))
    assert problem is not None
    assert refusal in problem


def test_remote_hosts_need_allow_remote() -> None:
    args = parser().parse_args(["run", "--host", "http://10.0.0.5:8000", "--allow-remote"])
    assert check(args) is None
    assert check(parser().parse_args(["run", "--host", "http://127.0.0.1:8000"])) is None


class _FakePrometheus(Prometheus):
    """Answers each SLO query from a table; records what it was asked."""

    def __init__(self, answers: dict[str, float | None]) -> None:
        super().__init__("http://127.0.0.1:1")
        self.answers = answers
        self.asked: list[tuple[str, float]] = []

    def reachable(self) -> bool:
        return True

    def scalar(self, query: str, at: float) -> float | None:
        self.asked.append((query, at))
        for needle, value in self.answers.items():
            if needle in query:
                return value
        return None


def test_the_server_view_asks_each_slo_over_the_runs_window_at_its_end() -> None:
    write = next(s for s in SPEC.slos if s.name == "write-availability")
    prom = _FakePrometheus(
        {
            write.sli.events.error_query.replace("{{.window}}", "30s"): 0.5,
            write.sli.events.total_query.replace("{{.window}}", "30s"): 10.0,
        }
    )
    readings = server_view(SPEC, prom, 1000.0, 1030.0)
    assert readings is not None
    assert readings["write-availability"].sli == pytest.approx(0.95)
    assert readings["write-availability"].status == "missed"
    assert readings["read-availability"].status == "no data"  # nothing selected
    assert all("[30s]" in q and "{{.window}}" not in q for q, _ in prom.asked)
    assert {at for _, at in prom.asked} == {1030.0}


def test_no_prometheus_means_no_server_view() -> None:
    assert server_view(SPEC, None, 0, 60) is None
    assert server_view(SPEC, Prometheus("http://127.0.0.1:1", timeout=0.2), 0, 60) is None
