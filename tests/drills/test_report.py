"""The drill reports from synthetic journals: one per verdict, written the way the
runner writes them (chaos-design.md), so every table, the timeline and the alert
fidelity numbers are checked against values worked out by hand."""

from __future__ import annotations

import base64
import json
import random
import re
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest

from drills.cli import ended_as_it_must
from drills.fidelity import fidelity
from drills.report import (
    fault_missed,
    report_name,
    summary_rows,
    summary_table,
    timeline_figure,
    write_index,
    write_report,
)
from tests.support.browser import assert_drawn, screenshot

T0 = 1_764_597_600.0  # 2025-12-01 14:00:00 UTC
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _phases(marks: list[tuple[str, float]], end: float) -> list[dict[str, Any]]:
    bounds = [*(at for _, at in marks[1:]), end]
    return [
        {"name": name, "start": T0 + at, "end": T0 + b}
        for (name, at), b in zip(marks, bounds, strict=True)
    ]


def _timeline(
    seconds: int,
    fault: tuple[float, float],
    *,
    breaker: tuple[float, float] | None = None,
    read_slow: float = 0.0,
    errors: float = 0.0,
    lag: float = 0.0,
    backlog: float = 0.0,
    seed: int = 1,
) -> dict[str, Any]:
    """One sample a second: the shape of a drill under 20 tasks/s of load."""
    rnd = random.Random(seed)
    begin, end = fault
    series: dict[str, list[Any]] = {k: [] for k in (
        "requests_per_s", "error_ratio_5xx", "p95_read_ms", "p95_write_ms", "p95_auth_ms",
        "breaker_open", "consumer_lag", "outbox_backlog",
    )}  # fmt: skip
    for s in range(seconds):
        hot = begin <= s < end
        opened = breaker is not None and breaker[0] <= s < breaker[1]
        series["requests_per_s"].append(round(20 + rnd.uniform(-2, 2) - (4 if hot else 0), 1))
        ratio = 0.0 if not hot else (0.02 if opened else errors)
        series["error_ratio_5xx"].append(round(ratio + rnd.uniform(0, 0.004), 4))
        read = 35 + rnd.uniform(-5, 5)
        write = 60 + rnd.uniform(-8, 8)
        if hot and not opened:
            read, write = read + read_slow, write + read_slow
        elif hot:
            read, write = 48 + rnd.uniform(-4, 4), 4 + rnd.uniform(0, 2)  # stale cache, fast 503
        series["p95_read_ms"].append(round(read, 1))
        series["p95_write_ms"].append(round(write, 1))
        series["p95_auth_ms"].append(round(90 + rnd.uniform(-10, 10), 1))
        series["breaker_open"].append(1 if opened else 0)
        grow = max(0.0, min(s, end) - begin) if s >= begin else 0.0
        drain = max(0.0, s - end) * 3
        series["consumer_lag"].append(max(0.0, round(lag * grow - lag * drain, 1)))
        series["outbox_backlog"].append(max(0.0, round(backlog * grow - backlog * drain, 1)))
    return {"t": [T0 + s for s in range(seconds)], "series": series, "alerts_firing": []}


def _probe(
    name: str, kind: str, value: float, tolerance: dict[str, Any], met: bool
) -> dict[str, Any]:
    return {"name": name, "kind": kind, "value": value, "tolerance": tolerance, "met": met}


def passed_journal() -> dict[str, Any]:
    """trading latency 2 s: the breaker opens, reads come from the stale cache."""
    timeline = _timeline(100, (20, 50), breaker=(27, 56), read_slow=2000, errors=0.35)
    timeline["alerts_firing"] = [{"name": "GatewayBreakerOpen", "start": T0 + 27.2, "end": T0 + 57}]
    held = {"met": True, "probes": [
        _probe("gateway read p99 within SLO", "promql", 0.21, {"max": 0.25}, True),
        _probe("5xx ratio", "promql", 0.003, {"max": 0.05}, True),
    ]}  # fmt: skip
    return {
        "drill": "trading-latency", "title": "Trading latency 2 s on all instances",
        "run_id": "20261201T140000Z", "status": "passed", "deviated": False,
        "without_defence": False,
        "defence": {"name": "circuit breaker", "setting": "ASTRA_BREAKER__ENABLED=false"},
        "start": T0, "end": T0 + 100,
        "phases": _phases([("baseline", 0), ("inject", 18), ("observe", 20), ("remove", 50),
                           ("recover", 52)], 100),
        "fault": {"kind": "toxic", "targets": ["gateway_trading-1", "gateway_trading-2"],
                  "start": T0 + 20, "end": T0 + 50},
        "steady_states": {"before": held, "during": {"met": True, "probes": [
            _probe("anonymous reads served stale", "http", 1.0, {"equals": 1}, True),
            _probe("writes answer 503 with Retry-After", "http", 1.0, {"equals": 1}, True),
        ]}, "after": held},
        "run": [
            {"activity": "add latency toxic 2000 ms", "start": T0 + 20, "end": T0 + 20.1,
             "status": "succeeded", "output": "toxic latency_downstream on 2 proxies"},
            {"activity": "remove toxics", "start": T0 + 50, "end": T0 + 50.1,
             "status": "succeeded", "output": ""},
        ],
        "rollbacks": [{"activity": "reset toxics", "status": "succeeded"}],
        "alerts": {"expected": [{"name": "GatewayBreakerOpen", "within_seconds": 30,
                                 "fired_after": 7.2}],
                   "forbidden": [{"name": "OutboxBacklogStale", "fired": False}],
                   "unexpected": []},
        "abort": None, "time_to_detect": 7.2, "time_to_recover": 8.5,
        "accounting": {"orders_accepted": 120, "trade_events": 120, "xp_awards": 120,
                       "feed_entries": 120, "nfts_minted": 3, "lost": 0, "duplicated": 0,
                       "exact": True},
        "load": {"rate": 20, "requests": 2000, "errors_5xx": 31},
        "timeline": timeline,
    }  # fmt: skip


# fmt: off
def failed_journal() -> dict[str, Any]:
    """Redis down for trading: three events lost, the backlog alert never fired, the
    lag alert fired late, and the breaker (forbidden here) opened."""
    timeline = _timeline(90, (20, 30), lag=4.0, backlog=2.5, seed=2)
    timeline["alerts_firing"] = [
        {"name": "GatewayBreakerOpen", "start": T0 + 24, "end": T0 + 33},
        {"name": "ScrapeTargetDown", "start": T0 + 40, "end": T0 + 70},
        {"name": "BusConsumerLagHigh", "start": T0 + 65, "end": None},  # still firing
    ]
    return {
        "drill": "redis-down-trading", "title": "Redis down for trading for 10 s",
        "run_id": "20261201T140000Z", "status": "failed", "deviated": True,
        "without_defence": False,
        "defence": {"name": "transactional outbox", "setting": "ASTRA_OUTBOX__ENABLED=false"},
        "start": T0, "end": T0 + 90,
        "phases": _phases([("baseline", 0), ("inject", 20), ("observe", 21), ("remove", 30),
                           ("recover", 31)], 90),
        "fault": {"kind": "disable", "targets": ["trading-1_redis"], "start": T0 + 20,
                  "end": T0 + 30},
        "steady_states": {
            "before": {"met": True, "probes": [
                _probe("orders accepted", "http", 1.0, {"min": 0.99}, True)]},
            "during": {"met": False, "probes": [
                _probe("orders accepted", "http", 0.62, {"min": 0.99}, False)]},
            "after": {"met": False, "probes": [
                _probe("events delivered", "accounting", 117, {"equals": 120}, False)]},
        },
        "run": [{"activity": "disable trading-1_redis", "start": T0 + 20, "end": T0 + 20.05,
                 "status": "succeeded", "output": "x" * 5000}],
        "rollbacks": [{"activity": "enable trading-1_redis", "status": "succeeded"}],
        "alerts": {"expected": [
            {"name": "OutboxBacklogStale", "within_seconds": 60, "fired_after": None},
            {"name": "BusConsumerLagHigh", "within_seconds": 30, "fired_after": 45.0},
        ], "forbidden": [{"name": "GatewayBreakerOpen", "fired": True}],
            # a forbidden alert that fired may be listed here too: still one false positive
            "unexpected": ["ScrapeTargetDown", "GatewayBreakerOpen"]},
        "abort": None, "time_to_detect": None, "time_to_recover": 21.0,
        "accounting": {"orders_accepted": 120, "trade_events": 117, "xp_awards": 117,
                       "feed_entries": 117, "nfts_minted": 2, "lost": 3, "duplicated": 0,
                       "exact": False},
        "load": {"rate": 20, "requests": 1800, "errors_5xx": 76},
        "timeline": timeline,
    }
# fmt: on


def aborted_journal() -> dict[str, Any]:
    """reset_peer, aborted at +35 s: a partial timeline, two series never collected,
    gaps in the write p95, no 'after' hypothesis."""
    timeline = _timeline(40, (20, 60), errors=0.3, seed=3)
    del timeline["series"]["consumer_lag"], timeline["series"]["outbox_backlog"]
    timeline["series"]["p95_write_ms"][25:30] = [None] * 5
    timeline["series"]["p95_auth_ms"] = timeline["series"]["p95_auth_ms"][:12]  # short
    timeline["alerts_firing"] = [{"name": "GatewayBreakerOpen", "start": T0 + 32}]  # no end
    return {
        "drill": "reset-peer", "title": "reset_peer at toxicity 0.3 on gateway to trading",
        "run_id": "20261201T140000Z", "status": "aborted", "deviated": True,
        "without_defence": False,
        "defence": {"name": "retry budget", "setting": "ASTRA_UPSTREAM__RETRIES_ENABLED=false"},
        "start": T0, "end": T0 + 40,
        "phases": _phases([("baseline", 0), ("inject", 20)], 35),
        "fault": {"kind": "toxic", "targets": ["gateway_trading-1"], "start": T0 + 20,
                  "end": T0 + 35},
        "steady_states": {"before": {"met": True, "probes": [
            _probe("5xx ratio", "promql", 0.0, {"max": 0.01}, True)]},
            "during": {"met": False, "probes": [
                _probe("5xx ratio", "promql", 0.31, {"max": 0.01}, False)]}},
        "run": [{"activity": "add reset_peer toxic", "start": T0 + 20, "end": T0 + 20.1,
                 "status": "succeeded", "output": ""}],
        "rollbacks": [{"activity": "reset toxics", "status": "succeeded"}],
        "alerts": {"expected": [{"name": "GatewayBreakerOpen", "within_seconds": 30,
                                 "fired_after": 12.0}], "forbidden": [], "unexpected": []},
        "abort": {"condition": "5xx ratio above 0.2 for 5 s", "at": T0 + 35},
        "time_to_detect": 12.0, "time_to_recover": None,
        "accounting": {"orders_accepted": 40, "trade_events": 40, "xp_awards": 40,
                       "feed_entries": 40, "nfts_minted": 0, "lost": 0, "duplicated": 0,
                       "exact": True},
        "load": {"rate": 20, "requests": 700, "errors_5xx": 140},
        "timeline": timeline,
    }  # fmt: skip


def clean_journal() -> dict[str, Any]:
    journal = passed_journal()
    journal.update(
        drill="clean", title="No fault: the precision control", fault=None,
        time_to_detect=None, time_to_recover=None, run=[], rollbacks=[],
        alerts={"expected": [], "unexpected": [], "forbidden": [
            {"name": "GatewayBreakerOpen", "fired": False},
            {"name": "OutboxBacklogStale", "fired": False}]},
        timeline=_timeline(100, (1000, 1000), seed=4),
    )  # fmt: skip
    return journal


def without_defence_journal() -> dict[str, Any]:
    journal = passed_journal()
    journal.update(status="failed", deviated=True, without_defence=True,
                   alerts={"expected": [{"name": "GatewayBreakerOpen", "within_seconds": 30,
                                         "fired_after": None}],
                           "forbidden": [], "unexpected": ["ReadLatencyBudgetBurn"]})  # fmt: skip
    return journal


def suite() -> list[dict[str, Any]]:
    return [passed_journal(), failed_journal(), aborted_journal(), clean_journal(),
            without_defence_journal()]  # fmt: skip


def _png(page: str) -> bytes:
    found = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(found) == 1, "one timeline per report"
    data = base64.b64decode(found[0])
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return data


def _texts(journal: dict[str, Any]) -> list[str]:
    fig = timeline_figure(journal)
    try:
        return [t.get_text() for ax in fig.axes for t in ax.texts]
    finally:
        plt.close(fig)


# -- one report ---------------------------------------------------------------------


def test_a_passed_report_has_its_header_timeline_and_tables(tmp_path: Path) -> None:
    path = write_report(passed_journal(), tmp_path)
    assert path == tmp_path / "trading-latency.html"
    page = path.read_text()
    assert len(_png(page)) > 20_000  # a real plot, not an empty canvas
    assert "PASSED" in page
    assert "#2e7d32" in page
    assert "circuit breaker" in page
    assert "ASTRA_BREAKER__ENABLED=false" in page
    assert "without defence" not in page
    for heading in ("Timeline", "Steady-state hypothesis", "Phases", "Activities", "Rollbacks",
                    "Alerts", "Event accounting"):  # fmt: skip
        assert f"<h2>{heading}</h2>" in page
    assert "gateway read p99 within SLO" in page
    assert "max 0.25" in page
    assert page.count("<td>before</td>") == 1
    assert page.count("<td>after</td>") == 1
    assert "add latency toxic 2000 ms" in page
    assert "reset toxics" in page
    assert "fired after 7.2 s" in page
    assert "held quiet" in page
    assert "<tr class=''><th>lost</th><td>0</td></tr>" in page  # zero: not highlighted
    texts = _texts(passed_journal())
    assert "no data" not in texts
    assert {"baseline", "inject", "observe", "remove", "recover"} <= set(texts)
    assert {"detected +7.2 s", "recovered +8.5 s"} <= set(texts)
    assert "abort" not in texts


def test_a_failed_report_highlights_lost_events_and_missed_alerts(tmp_path: Path) -> None:
    page = write_report(failed_journal(), tmp_path).read_text()
    _png(page)
    assert "FAILED" in page
    assert "#c62828" in page
    assert "<tr class='bad'><th>lost</th><td>3</td></tr>" in page
    assert "<tr class='bad'><th>exact</th><td>no</td></tr>" in page
    assert "<tr class=''><th>duplicated</th><td>0</td></tr>" in page
    assert "MISSED: never fired" in page
    assert "MISSED: fired late, after 45.0 s" in page
    assert page.count("FIRED, not expected") == 1  # the forbidden one has its own row
    assert "<td>FIRED</td>" in page
    assert " …" in page
    assert "x" * 601 not in page
    assert {"GatewayBreakerOpen", "ScrapeTargetDown", "BusConsumerLagHigh"}.isdisjoint(
        _texts(failed_journal())
    )  # alert names are the band panel's tick labels, not texts


def test_an_aborted_report_marks_the_abort_and_renders_a_partial_timeline(
    tmp_path: Path,
) -> None:
    page = write_report(aborted_journal(), tmp_path).read_text()
    _png(page)
    assert "ABORTED" in page
    assert "#ef6c00" in page
    assert "5xx ratio above 0.2 for 5 s at +35.0 s" in page
    assert "<td>after</td><td colspan='5'>not measured</td>" in page
    texts = _texts(aborted_journal())
    assert texts.count("no data") == 2  # consumer lag and outbox backlog never collected
    assert "abort" in texts
    assert "detected +12.0 s" in texts
    assert not any(t.startswith("recovered") for t in texts)


@pytest.mark.parametrize(
    "journal",
    [
        {},
        {"drill": "x", "timeline": {"t": [], "series": {}, "alerts_firing": []}},
        {"drill": "x", "start": T0, "end": T0 + 5, "timeline": None, "steady_states": None,
         "alerts": None, "accounting": None, "fault": {"kind": "toxic"}, "phases": [{}]},
        {"drill": "x", "timeline": {"t": [T0, T0 + 1, "?"], "series": {
            "requests_per_s": [1, "n/a", None, 4], "breaker_open": [True, False],
            "consumer_lag": {"gamification": [1, 2, 3], "nft": [0, 0, 0]},
            "a_new_series": [3, 2, 1]},
            "alerts_firing": [{"name": "A"}, "junk", {"name": "B", "start": T0, "end": T0}]}},
        {"drill": "x", "alerts": {"expected": ["junk", {"name": "A"}], "forbidden": [None],
                                  "unexpected": [{"name": "B"}, "C"]}},
    ],
    ids=["empty", "empty-timeline", "nulls-everywhere", "odd-values", "odd-alerts"],
)  # fmt: skip
def test_missing_or_odd_data_renders_gracefully(journal: dict[str, Any], tmp_path: Path) -> None:
    page = write_report(journal, tmp_path).read_text()
    _png(page)
    assert "<h2>Timeline</h2>" in page
    write_index([journal], tmp_path)
    assert summary_table([journal])
    assert fidelity([journal]).table()


def test_an_empty_timeline_says_no_data_on_every_panel() -> None:
    texts = _texts({"drill": "x", "timeline": {"t": [], "series": {}}})
    assert texts.count("no data") == 6
    assert "no alert fired" in texts
    assert "no phases recorded" in texts


def test_a_run_without_its_defence_gets_its_own_report_and_says_what_it_must_do(
    tmp_path: Path,
) -> None:
    path = write_report(without_defence_journal(), tmp_path)
    assert path.name == "trading-latency.without-defence.html"
    page = path.read_text()
    assert "without defence" in page
    assert "It did: the drill catches the failure" in page
    journal = without_defence_journal() | {"status": "passed"}
    page = write_report(journal, tmp_path).read_text()
    assert "proves nothing, and is a defect" in page


def test_a_control_whose_fault_took_no_effect_is_inconclusive(tmp_path: Path) -> None:
    # Failed without its defence, but because the fault never bit (no reset reached a
    # request): not the control's expected failure.
    journal = without_defence_journal()
    journal["steady_states"]["during"] = {"met": False, "probes": [
        {"name": "resets reached attempts", "kind": "promql", "value": 0.0,
         "tolerance": {"min": 3.0}, "met": False, "fault_effect": True}]}  # fmt: skip
    assert fault_missed(journal)
    assert not ended_as_it_must(journal)
    (row,) = summary_rows([journal])
    assert row.verdict == "failed, INCONCLUSIVE: the fault took no effect"
    assert not row.good
    assert "inconclusively" in write_report(journal, tmp_path).read_text()
    assert not fault_missed(without_defence_journal())
    assert ended_as_it_must(without_defence_journal())


# -- the suite ----------------------------------------------------------------------


def test_alert_fidelity_counts_by_hand() -> None:
    table = fidelity(suite())
    assert table.drills == ["trading-latency", "redis-down-trading", "reset-peer", "clean"]
    assert table.excluded == ["trading-latency"]  # the run without its defence
    assert [a.name for a in table.alerts] == [
        "BusConsumerLagHigh",
        "GatewayBreakerOpen",
        "OutboxBacklogStale",
        "ScrapeTargetDown",
    ]  # fmt: skip  (ReadLatencyBudgetBurn only fired in the excluded run)

    breaker = table.get("GatewayBreakerOpen")
    assert breaker is not None
    assert [(f.drill, f.fired_after) for f in breaker.fired] == [
        ("trading-latency", 7.2), ("reset-peer", 12.0)]  # fmt: skip
    assert breaker.missed == []
    # forbidden in redis-down-trading and also listed as unexpected there: counted once
    assert [(u.drill, u.forbidden) for u in breaker.unexpected] == [("redis-down-trading", True)]
    assert breaker.quiet == ["clean"]
    assert (breaker.tp, breaker.fn, breaker.fp) == (2, 0, 1)
    assert breaker.precision == pytest.approx(2 / 3)
    assert breaker.recall == 1.0

    outbox = table.get("OutboxBacklogStale")
    assert outbox is not None
    assert [(m.drill, m.reason) for m in outbox.missed] == [("redis-down-trading", "never fired")]
    assert outbox.quiet == ["trading-latency", "clean"]
    assert (outbox.tp, outbox.fn, outbox.fp) == (0, 1, 0)
    assert outbox.precision is None
    assert outbox.recall == 0.0

    lag = table.get("BusConsumerLagHigh")
    assert lag is not None
    assert [m.reason for m in lag.missed] == ["late: 45.0 s > 30.0 s"]  # late is a miss
    assert (lag.tp, lag.fn, lag.fp, lag.precision, lag.recall) == (0, 1, 0, None, 0.0)

    scrape = table.get("ScrapeTargetDown")
    assert scrape is not None
    assert [(u.drill, u.forbidden) for u in scrape.unexpected] == [("redis-down-trading", False)]
    assert (scrape.tp, scrape.fn, scrape.fp, scrape.precision, scrape.recall) == (
        0, 0, 1, 0.0, None)  # fmt: skip

    # Over the suite: TP 2, FN 2 (outbox, lag), FP 2 (breaker, scrape).
    assert (table.tp, table.fn, table.fp) == (2, 2, 2)
    assert table.precision == 0.5
    assert table.recall == 0.5


def test_a_perfect_suite_scores_one_and_the_text_and_json_agree() -> None:
    table = fidelity([passed_journal(), clean_journal(), without_defence_journal()])
    assert (table.precision, table.recall) == (1.0, 1.0)
    text = table.table()
    assert re.search(r"GatewayBreakerOpen\s+1\s+0\s+0\s+1\.00\s+1\.00", text)
    assert "fired in: trading-latency (7.2 s)" in text
    assert re.search(r"OutboxBacklogStale\s+0\s+0\s+0\s+-\s+-", text)  # only held quiet
    assert re.search(r"suite\s+1\s+0\s+0\s+1\.00\s+1\.00", text)
    assert "excluded (run --without-defence, meant to fail): trading-latency" in text
    data = json.loads(json.dumps(fidelity(suite()).to_json()))
    assert (data["tp"], data["fn"], data["fp"], data["precision"], data["recall"]) == (
        2, 2, 2, 0.5, 0.5)  # fmt: skip
    by_name = {a["name"]: a for a in data["alerts"]}
    assert by_name["BusConsumerLagHigh"]["missed"][0]["fired_after"] == 45.0
    assert by_name["GatewayBreakerOpen"]["quiet_where_forbidden"] == ["clean"]
    assert "missed in: redis-down-trading (never fired)" in fidelity(suite()).table()


def test_the_summary_table_for_the_terminal() -> None:
    text = summary_table(suite())
    lines = text.splitlines()
    for column in ("drill", "verdict", "time to detect", "time to recover", "5xx seen",
                   "events lost / duplicated", "alerts expected / fired / unexpected"):  # fmt: skip
        assert column in lines[0]
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[2:7]]  # journals' order
    assert rows == [
        ["trading-latency", "passed", "7.2 s", "8.5 s", "31 of 2000", "0 / 0", "1 / 1 / 0"],
        ["redis-down-trading", "failed", "-", "21.0 s", "76 of 1800", "3 / 0", "2 / 0 / 2"],
        ["reset-peer", "aborted", "12.0 s", "-", "140 of 700", "0 / 0", "1 / 1 / 0"],
        ["clean", "passed", "-", "-", "31 of 2000", "0 / 0", "0 / 0 / 0"],
        ["trading-latency", "failed (defence off, as it must)", "7.2 s", "8.5 s", "31 of 2000",
         "0 / 0", "1 / 0 / 1"],
    ]  # fmt: skip
    assert lines[-1] == "3 of 5 drill(s) ended as they must"


def test_the_index_links_every_report_and_shows_the_fidelity_table(tmp_path: Path) -> None:
    journals = suite()
    reports = [write_report(j, tmp_path) for j in journals]
    index = write_index(journals, tmp_path)
    assert index == tmp_path / "index.html"
    page = index.read_text()
    links = re.findall(r"<a href='([^']+)'>", page)
    assert links == [report_name(j) for j in journals] == [r.name for r in reports]
    assert all((tmp_path / link).exists() for link in links)
    assert len(set(links)) == 5  # the run without its defence does not overwrite its drill
    assert "<h2>Summary</h2>" in page
    assert "<h2>Alert fidelity</h2>" in page
    assert "alert precision 0.50, recall 0.50" in page
    assert "trading-latency (7.2 s), reset-peer (12.0 s)" in page
    assert "redis-down-trading (late: 45.0 s &gt; 30.0 s)" in page
    assert "redis-down-trading (forbidden)" in page
    assert "Excluded (run without their defence, meant to fail): trading-latency" in page
    assert "<td class='hot'>3 / 0</td>" in page  # lost events stand out
    assert write_index([], tmp_path / "empty").read_text().count("<a href") == 0


# -- in a browser -------------------------------------------------------------------


def test_a_report_renders_in_a_browser_with_its_timeline(tmp_path: Path) -> None:
    report = write_report(passed_journal(), tmp_path)
    pixels = screenshot(report, tmp_path / "report.png", height=2400)
    assert pixels.shape[:2] == (2400, 1100)
    assert_drawn(pixels)  # the timeline is drawn
    # ...and the fault window's red shade is on screen (tab:red at 10% over white).
    rgb = pixels[:, :, :3]
    pink = (rgb[:, :, 0] > 0.95) & (rgb[:, :, 1] > 0.85) & (rgb[:, :, 1] < 0.95)
    pink &= (rgb[:, :, 2] > 0.85) & (rgb[:, :, 2] < 0.95) & (rgb[:, :, 0] - rgb[:, :, 1] > 0.04)
    assert pink.sum() > 5_000, "no fault window in the screenshot"
