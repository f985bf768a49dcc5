"""`var/load/<run-id>/report.html`: one self-contained page per run.

The verdict table, then per SLO class over time: requests per second, p50/p95/p99
(against the class's latency threshold) and the error ratio, from the per-second
timeline the locustfile records. Periods in which any alert fired (the Alertmanager
webhook record, `<stack run dir>/alerts.jsonl`, from `stack.observe.sd`) are shaded.
The plots are PNGs embedded as base64, so the file can be mailed or attached to a CI run.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

CLASSES = ("read", "write", "auth")
COLOURS = {"read": "tab:blue", "write": "tab:orange", "auth": "tab:green", "other": "tab:gray"}
_FRACTION = re.compile(r"(\.\d{6})\d+")

Series = dict[str, list[tuple[float, int, int, int, dict[int, int]]]]


def alert_periods(path: Path | None, start: float, end: float) -> list[tuple[float, float, str]]:
    """(from, to, alertname) for every alert that fired during [start, end]."""
    if path is None or not path.exists():
        return []
    spans: dict[tuple[str, str], tuple[float, float]] = {}
    for line in path.read_text().splitlines():
        try:
            note = json.loads(line)
        except ValueError:
            continue
        for alert in note.get("alerts", []):
            name = str(alert.get("labels", {}).get("alertname", "alert"))
            began = _when(alert.get("startsAt"))
            if began is None:
                continue
            stopped = _when(alert.get("endsAt")) if alert.get("status") == "resolved" else None
            stopped = end if stopped is None or stopped < began else stopped
            key = (name, str(alert.get("fingerprint", began)))
            old = spans.get(key)
            spans[key] = (began, stopped if old is None else max(old[1], stopped))
    return [
        (max(a, start), min(b, end), name)
        for (name, _), (a, b) in spans.items()
        if b >= start and a <= end
    ]


def _when(value: Any) -> float | None:
    if not isinstance(value, str) or value.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(
            _FRACTION.sub(r"\1", value.replace("Z", "+00:00"))
        ).timestamp()
    except ValueError:
        return None


def _series(timeline: Iterable[list[Any]]) -> Series:
    """Per class, one row per second from the first to the last request of the run;
    a second without requests is a row of zeros (a stall must show, not be bridged)."""
    rows = list(timeline)
    if not rows:
        return {}
    first, last = min(int(r[0]) for r in rows), max(int(r[0]) for r in rows)
    seen: dict[str, dict[int, list[Any]]] = defaultdict(dict)
    for sec, cls, n, errors, throttled, hist in rows:
        seen[str(cls)][int(sec)] = [n, errors, throttled, hist]
    by_class: Series = {}
    for cls, by_sec in seen.items():
        by_class[cls] = []
        for sec in range(first, last + 1):
            n, errors, throttled, hist = by_sec.get(sec, (0, 0, 0, {}))
            counts = {int(k): int(v) for k, v in hist.items()}
            by_class[cls].append((float(sec), int(n), int(errors), int(throttled), counts))
    return by_class


def _quantile(hist: dict[int, int], q: float) -> float:
    total, seen = sum(hist.values()), 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= q * total:
            return float(ms)
    return float(max(hist)) if hist else 0.0


def merged(periods: list[tuple[float, float, str]]) -> list[tuple[float, float]]:
    """The union of the firing periods: where any alert fired."""
    spans: list[tuple[float, float]] = []
    for a, b, _ in sorted(periods):
        if spans and a <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], b))
        else:
            spans.append((a, b))
    return spans


def _shade(ax: Axes, periods: list[tuple[float, float, str]], t0: float) -> None:
    for n, (a, b) in enumerate(merged(periods)):
        ax.axvspan(
            a - t0, b - t0, color="red", alpha=0.12, label="any alert firing" if n == 0 else None
        )


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def plots(
    series: Series,
    thresholds: dict[str, float],
    periods: list[tuple[float, float, str]],
    t0: float,
) -> list[tuple[str, str]]:
    """(title, base64 PNG) per plot."""
    out = []
    fig, ax = plt.subplots(figsize=(10, 3.2))
    for cls, rows in sorted(series.items()):
        ax.plot([r[0] - t0 for r in rows], [r[1] for r in rows], label=cls, color=COLOURS.get(cls))
    ax.set(xlabel="seconds into the run", ylabel="requests/s", title="Throughput per SLO class")
    _shade(ax, periods, t0)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    out.append(("Requests per second", _png(fig)))

    classes = [c for c in CLASSES if c in series] or sorted(series)
    fig, axes = plt.subplots(
        len(classes), 1, figsize=(10, 2.6 * len(classes)), squeeze=False, sharex=True
    )
    for ax, cls in zip(axes[:, 0], classes, strict=True):
        rows = [r for r in series[cls] if r[4]]  # seconds with answers only
        xs = [r[0] - t0 for r in rows]
        for q, style in ((0.5, ".-"), (0.95, ".--"), (0.99, ".:")):
            ax.plot(
                xs,
                [_quantile(r[4], q) for r in rows],
                style,
                label=f"p{int(q * 100)}",
                color=COLOURS.get(cls),
            )
        if cls in thresholds:
            ax.axhline(thresholds[cls] * 1000, color="black", lw=0.8, label="SLO threshold")
        ax.set(ylabel="ms", title=f"{cls}: latency percentiles")
        _shade(ax, periods, t0)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("seconds into the run")
    fig.tight_layout()
    out.append(("Latency p50 / p95 / p99", _png(fig)))

    fig, ax = plt.subplots(figsize=(10, 3.2))
    for cls, rows in sorted(series.items()):
        answered = [r for r in rows if r[1]]  # a ratio needs answers
        ax.plot(
            [r[0] - t0 for r in answered],
            [r[2] / r[1] for r in answered],
            ".-",
            label=cls,
            color=COLOURS.get(cls),
        )
    ax.set(
        xlabel="seconds into the run",
        ylabel="5xx + no answer / requests",
        title="Error ratio per SLO class (429 excluded)",
    )
    ax.set_ylim(bottom=0)
    _shade(ax, periods, t0)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    out.append(("Error ratio", _png(fig)))
    return out


def _table(summary: dict[str, Any]) -> str:
    head = (
        "<tr><th>SLO</th><th>objective</th><th>client</th><th>server</th>"
        "<th>margin (pp, client / server)</th><th>verdict</th></tr>"
    )
    rows = []
    for slo in summary.get("slos", []):
        cells = []
        for view in ("client", "server"):
            reading = slo[view]
            sli = reading.get("sli")
            cells.append(
                html.escape(reading["status"])
                if sli is None
                else f"{sli * 100:.3f}% ({html.escape(reading['status'])})"
            )
        verdict = "MISSED" if slo["missed"] else "ok"
        if slo["disagree"]:
            verdict += " (views disagree)"
        cls = "missed" if slo["missed"] else "ok"
        margin = " / ".join("-" if m is None else f"{m:+.3f}" for m in slo["margin_pp"].values())
        rows.append(
            f"<tr class='{cls}'><td>{html.escape(slo['slo'])}</td><td>{slo['objective']:g}%</td>"
            f"<td>{cells[0]}</td><td>{cells[1]}</td><td>{margin}</td><td>{verdict}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def write(
    run_dir: Path, locust_out: dict[str, Any], summary: dict[str, Any], alerts: Path | None
) -> Path:
    series = _series(locust_out.get("timeline", []))
    window = summary.get("window", {})
    t0 = float(window.get("start") or min((r[0][0] for r in series.values() if r), default=0))
    end = float(window.get("end") or t0)
    periods = alert_periods(alerts, t0, end)
    thresholds = {str(k): float(v) for k, v in summary.get("thresholds", {}).items()}
    images = plots(series, thresholds, periods, t0)
    verdict = "PASS" if summary.get("passed") else "FAIL"
    figures = "".join(
        f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
        f"src='data:image/png;base64,{png}'>"
        for title, png in images
    )
    fired = ", ".join(sorted({p[2] for p in periods})) or "none"
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>Load run {html.escape(str(summary.get("run_id")))}: {verdict}</title>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:1000px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}
tr.missed{{background:#fdd}}tr.ok{{background:#efe}}img{{max-width:100%}}</style></head><body>
<h1>Load run {html.escape(str(summary.get("run_id")))}: {verdict}</h1>
<p>{html.escape(str(summary.get("shape")))}, {summary.get("users")} users,
{summary.get("rate")} tasks/s, {summary.get("seconds")} s against
{html.escape(str(summary.get("host")))}; server view {html.escape(str(summary.get("server_view")))};
alerts fired: {html.escape(fired)}.</p>
{_table(summary)}
{figures}
</body></html>
"""
    path = run_dir / "report.html"
    path.write_text(page)
    return path
