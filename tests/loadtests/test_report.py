"""The report from a recorded run: plots embedded, alert periods read from the webhook
record and clipped to the run, a stall drawn as a stall."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from loadtests import report

T0 = 1_800_000_000.0


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def test_alert_periods_come_from_the_webhook_record_clipped_to_the_run(tmp_path: Path) -> None:
    record = tmp_path / "alerts.jsonl"
    notes = [
        {"alerts": [{"status": "firing", "labels": {"alertname": "A"}, "startsAt": _iso(T0 + 10),
                     "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "a"}]},
        {"alerts": [{"status": "resolved", "labels": {"alertname": "A"}, "startsAt": _iso(T0 + 10),
                     "endsAt": _iso(T0 + 20), "fingerprint": "a"}]},
        {"alerts": [{"status": "firing", "labels": {"alertname": "B"}, "startsAt": _iso(T0 + 15),
                     "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "b"}]},
        {"alerts": [{"status": "resolved", "labels": {"alertname": "Old"},
                     "startsAt": _iso(T0 - 99), "endsAt": _iso(T0 - 50), "fingerprint": "o"}]},
    ]  # fmt: skip
    record.write_text("\n".join(json.dumps(n) for n in notes) + "\nnot json\n")
    periods = report.alert_periods(record, T0, T0 + 60)
    assert sorted(p[2] for p in periods) == ["A", "B"]  # "Old" ended before the run
    assert report.merged(periods) == [(T0 + 10, T0 + 60)]  # B still firing at the end


def test_the_report_embeds_its_plots_and_the_verdict(tmp_path: Path) -> None:
    timeline = [[T0 + s, "read", 5, 1 if s == 3 else 0, 0, {"10": 4, "300": 1}] for s in (0, 1, 3)]
    summary = {
        "run_id": "r1", "passed": False, "window": {"start": T0, "end": T0 + 4},
        "thresholds": {"read": 0.25},
        "slos": [{"slo": "read-availability", "kind": "availability", "slo_class": "read",
                  "objective": 99.9, "missed": True, "disagree": False,
                  "margin_pp": {"client": -6.6, "server": None},
                  "client": {"sli": 0.933, "status": "missed"},
                  "server": {"sli": None, "status": "unavailable"}}],
    }  # fmt: skip
    page = report.write(tmp_path, {"timeline": timeline}, summary, None).read_text()
    assert page.count("<img") == 3
    assert "read-availability" in page
    assert "FAIL" in page
    series = report._series(timeline)
    assert [r[1] for r in series["read"]] == [5, 5, 0, 5]  # second 2 had no answers: zero
