"""The reports people read, as pure functions of drill journals.

`write_report(journal, out)` writes `<out>/<drill>.html`: one self-contained page per
drill (the verdict, a PNG timeline embedded as base64, then the journal's tables), so
it can be mailed or attached to a CI run. `write_index(journals, out)` writes
`<out>/index.html` for `astra drill run --all`: the summary table linking to each
report, then the alert fidelity table. `summary_table(journals)` is the same summary
for the terminal.

The timeline stacks one panel per series, sharing the time axis:

    phases      baseline | inject | observe | remove | recover   (+ detect / recover / abort)
    requests/s, 5xx ratio, p95 per SLO class, breaker open, consumer lag, outbox backlog
    alerts firing                                                 (one band per alert)

with the fault window shaded on every panel. A journal is read defensively: an aborted
drill has a partial timeline, an old one may lack a series; either renders "no data",
never a traceback, because the report is what people read after a drill went wrong.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from drills.fidelity import FidelityTable, fidelity, format_ratio

# (title, y label, [(series key, legend label)]), top to bottom.
PANELS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("Requests per second", "requests/s", (("requests_per_s", "requests/s"),)),
    ("5xx ratio", "5xx / requests", (("error_ratio_5xx", "5xx ratio"),)),
    (
        "p95 latency per SLO class",
        "ms",
        (("p95_read_ms", "read"), ("p95_write_ms", "write"), ("p95_auth_ms", "auth")),
    ),
    ("Breaker", "open", (("breaker_open", "breaker open"),)),
    ("Consumer lag", "entries", (("consumer_lag", "consumer lag"),)),
    ("Outbox backlog", "rows", (("outbox_backlog", "outbox backlog"),)),
)
KNOWN_SERIES = {key for _, _, lines in PANELS for key, _ in lines}
COLOURS = {"read": "tab:blue", "write": "tab:orange", "auth": "tab:green"}
VERDICT_COLOURS = {"passed": "#2e7d32", "failed": "#c62828", "aborted": "#ef6c00"}
PHASE_COLOURS = ("#e3f2fd", "#fff3e0", "#fce4ec", "#f3e5f5", "#e8f5e9", "#eceff1")
ACCOUNTING = (
    "orders_accepted",
    "trade_events",
    "xp_awards",
    "feed_entries",
    "nfts_minted",
    "lost",
    "duplicated",
    "exact",
)
_OUTPUT_CHARS = 600  # of an activity's output shown in the report


# -- one drill ----------------------------------------------------------------------


def report_name(journal: Mapping[str, Any]) -> str:
    """The file name of a journal's report. A run `--without-defence` gets its own, so
    it sits beside the same drill's defended run in one run directory."""
    drill = _slug(str(journal.get("drill") or "drill"))
    return f"{drill}.without-defence.html" if journal.get("without_defence") else f"{drill}.html"


def write_report(journal: Mapping[str, Any], out: Path) -> Path:
    """Write `<out>/<drill>.html` for one journal and return its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / report_name(journal)
    path.write_text(render_report(journal))
    return path


def render_report(journal: Mapping[str, Any]) -> str:
    drill = str(journal.get("drill") or "?")
    status = str(journal.get("status") or "unknown")
    t0 = _origin(journal)
    png = timeline_png(journal)
    body = [
        _header(journal),
        "<h2>Timeline</h2>",
        f"<img class='timeline' alt='timeline of {_e(drill)}' src='data:image/png;base64,{png}'>",
        "<p class='note'>Seconds since the drill started; the fault window is shaded, the "
        "detect, recovery and abort moments are marked.</p>",
        _steady_states(journal.get("steady_states")),
        _phases(journal.get("phases"), t0),
        _activities(journal.get("run"), t0),
        _rollbacks(journal.get("rollbacks")),
        _alerts(journal.get("alerts")),
        _accounting(journal.get("accounting"), journal.get("load")),
    ]
    return _page(f"Drill {drill}: {status}", "".join(body))


def _header(journal: Mapping[str, Any]) -> str:
    drill = str(journal.get("drill") or "?")
    status = str(journal.get("status") or "unknown")
    colour = VERDICT_COLOURS.get(status, "#616161")
    facts = [
        ("drill", _e(drill)),
        ("title", _e(journal.get("title") or "")),
        ("run", _e(journal.get("run_id") or "")),
        ("started", _e(_utc(journal.get("start")))),
        ("duration", _e(_seconds(_span(journal.get("start"), journal.get("end"))))),
        ("deviated", _yes_no(journal.get("deviated")).lower()),
    ]
    defence = journal.get("defence") or {}
    if isinstance(defence, Mapping) and defence:
        name, setting = _e(defence.get("name", "")), _e(defence.get("setting", ""))
        facts.append(("defence", f"{name} (<code>{setting}</code> turns it off)"))
    fault = journal.get("fault") or {}
    if isinstance(fault, Mapping) and fault:
        targets = ", ".join(str(t) for t in fault.get("targets") or []) or "-"
        facts.append(
            ("fault", f"{_e(fault.get('kind', '?'))} on {_e(targets)}, "
             f"{_e(_seconds(_span(fault.get('start'), fault.get('end'))))}")
        )  # fmt: skip
    facts.append(("time to detect", _e(_seconds(journal.get("time_to_detect")))))
    facts.append(("time to recover", _e(_seconds(journal.get("time_to_recover")))))
    abort = journal.get("abort")
    if isinstance(abort, Mapping):
        facts.append(
            ("aborted", f"{_e(abort.get('condition', '?'))} at "
             f"{_e(_rel(abort.get('at'), _origin(journal)))}")
        )  # fmt: skip
    flag = ""
    if journal.get("without_defence"):
        met = status == "failed"
        flag = "<p class='without'>Run <b>without its defence</b>: it must end <b>failed</b>. " + (
            "It did, but <b>inconclusively</b>: a probe that shows the fault took effect "
            "failed, so the failure is not the defence's absence.</p>"
            if fault_missed(journal)
            else "It did: the drill catches the failure it is about.</p>"
            if met
            else f"It ended <b>{_e(status)}</b>: a drill that passes with its defence off "
            "proves nothing, and is a defect.</p>"
        )
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    return (
        f"<h1>Drill {_e(drill)} <span class='verdict' style='background:{colour}'>"
        f"{_e(status.upper())}</span>"
        + (" <span class='badge'>without defence</span>" if journal.get("without_defence") else "")
        + f"</h1>{flag}<table class='facts'>{rows}</table>"
    )


def _steady_states(states: Any) -> str:
    if not isinstance(states, Mapping) or not states:
        return "<h2>Steady-state hypothesis</h2><p class='nodata'>no data</p>"
    head = (
        "<tr><th>when</th><th>probe</th><th>kind</th><th>value</th><th>tolerance</th>"
        "<th>met</th></tr>"
    )
    rows = []
    for when in ("before", "during", "after"):
        state = states.get(when)
        if not isinstance(state, Mapping):
            rows.append(f"<tr class='skip'><td>{when}</td><td colspan='5'>not measured</td></tr>")
            continue
        probes = [p for p in state.get("probes") or [] if isinstance(p, Mapping)]
        verdict = state.get("met")
        rows.append(
            f"<tr class='group {_cls(verdict)}'><td>{when}</td>"
            f"<td colspan='4'>{len(probes)} probe(s)</td><td>{_yes_no(verdict)}</td></tr>"
        )
        for probe in probes:
            rows.append(
                f"<tr class='{_cls(probe.get('met'))}'><td></td>"
                f"<td>{_e(probe.get('name', '?'))}</td>"
                f"<td>{_e(probe.get('kind', ''))}</td><td>{_e(_value(probe.get('value')))}</td>"
                f"<td>{_e(_tolerance(probe.get('tolerance')))}</td>"
                f"<td>{_yes_no(probe.get('met'))}</td></tr>"
            )
    return f"<h2>Steady-state hypothesis</h2><table>{head}{''.join(rows)}</table>"


def _phases(phases: Any, t0: float) -> str:
    items = [p for p in phases or [] if isinstance(p, Mapping)]
    if not items:
        return "<h2>Phases</h2><p class='nodata'>no data</p>"
    head = "<tr><th>phase</th><th>from</th><th>to</th><th>lasted</th></tr>"
    rows = "".join(
        f"<tr><td>{_e(p.get('name', '?'))}</td><td>{_e(_rel(p.get('start'), t0))}</td>"
        f"<td>{_e(_rel(p.get('end'), t0))}</td>"
        f"<td>{_e(_seconds(_span(p.get('start'), p.get('end'))))}</td></tr>"
        for p in items
    )
    return f"<h2>Phases</h2><table>{head}{rows}</table>"


def _activities(run: Any, t0: float) -> str:
    items = [a for a in run or [] if isinstance(a, Mapping)]
    if not items:
        return "<h2>Activities</h2><p class='nodata'>no data</p>"
    head = "<tr><th>activity</th><th>from</th><th>lasted</th><th>status</th><th>output</th></tr>"
    rows = []
    for a in items:
        output = str(a.get("output") or "")
        if len(output) > _OUTPUT_CHARS:
            output = output[:_OUTPUT_CHARS] + " …"
        ok = a.get("status") == "succeeded"
        rows.append(
            f"<tr class='{'ok' if ok else 'bad'}'><td>{_e(a.get('activity', '?'))}</td>"
            f"<td>{_e(_rel(a.get('start'), t0))}</td>"
            f"<td>{_e(_seconds(_span(a.get('start'), a.get('end'))))}</td>"
            f"<td>{_e(a.get('status', '?'))}</td><td><pre>{_e(output)}</pre></td></tr>"
        )
    return f"<h2>Activities</h2><table>{head}{''.join(rows)}</table>"


def _rollbacks(rollbacks: Any) -> str:
    items = [r for r in rollbacks or [] if isinstance(r, Mapping)]
    if not items:
        return "<h2>Rollbacks</h2><p class='nodata'>none recorded</p>"
    head = "<tr><th>rollback</th><th>status</th></tr>"
    rows = "".join(
        f"<tr class='{'ok' if r.get('status') == 'succeeded' else 'bad'}'>"
        f"<td>{_e(r.get('activity', '?'))}</td><td>{_e(r.get('status', '?'))}</td></tr>"
        for r in items
    )
    return f"<h2>Rollbacks</h2><table>{head}{rows}</table>"


def _alerts(alerts: Any) -> str:
    if not isinstance(alerts, Mapping):
        return "<h2>Alerts</h2><p class='nodata'>no data</p>"
    forbidden_items = [f for f in alerts.get("forbidden") or [] if isinstance(f, Mapping)]
    rows = []
    for exp in [e for e in alerts.get("expected") or [] if isinstance(e, Mapping)]:
        within, after = _number(exp.get("within_seconds")), _number(exp.get("fired_after"))
        on_time = after is not None and (within is None or after <= within)
        if on_time:
            result = f"fired after {_seconds(after)}"
        elif after is not None:
            result = f"MISSED: fired late, after {_seconds(after)}"
        else:
            result = "MISSED: never fired"
        rows.append(
            f"<tr class='{'ok' if on_time else 'bad'}'><td>expected</td>"
            f"<td>{_e(exp.get('name', '?'))}</td><td>{_e(_seconds(within))}</td>"
            f"<td>{_e(result)}</td></tr>"
        )
    for forbidden in forbidden_items:
        fired = bool(forbidden.get("fired"))
        rows.append(
            f"<tr class='{'bad' if fired else 'ok'}'><td>forbidden</td>"
            f"<td>{_e(forbidden.get('name', '?'))}</td><td>-</td>"
            f"<td>{'FIRED' if fired else 'held quiet'}</td></tr>"
        )
    said = {str(f.get("name")) for f in forbidden_items if f.get("fired")}
    for item in alerts.get("unexpected") or []:
        name = str(item.get("name") if isinstance(item, Mapping) else item)
        if name in said:  # a forbidden alert that fired: its row is above
            continue
        said.add(name)
        rows.append(
            f"<tr class='bad'><td>unexpected</td><td>{_e(name)}</td><td>-</td>"
            "<td>FIRED, not expected</td></tr>"
        )
    if not rows:
        return "<h2>Alerts</h2><p class='nodata'>no alert expected, forbidden or seen</p>"
    head = "<tr><th></th><th>alert</th><th>must fire within</th><th>result</th></tr>"
    return f"<h2>Alerts</h2><table>{head}{''.join(rows)}</table>"


def _accounting(accounting: Any, load: Any) -> str:
    parts = ["<h2>Event accounting</h2>"]
    if isinstance(load, Mapping) and load:
        parts.append(
            f"<p>Background load: {_e(_value(load.get('rate')))} tasks/s, "
            f"{_e(_value(load.get('requests')))} requests, "
            f"{_e(_value(load.get('errors_5xx')))} answered 5xx.</p>"
        )
    if not isinstance(accounting, Mapping) or not accounting:
        parts.append("<p class='nodata'>no data</p>")
        return "".join(parts)
    keys = [k for k in ACCOUNTING if k in accounting]
    keys += sorted(k for k in accounting if k not in ACCOUNTING)
    cells = []
    for key in keys:
        value = accounting[key]
        wrong = (key in ("lost", "duplicated") and _number(value) not in (None, 0.0)) or (
            key == "exact" and value is False
        )
        cells.append(
            f"<tr class='{'bad' if wrong else ''}'><th>{_e(key.replace('_', ' '))}</th>"
            f"<td>{_e(_value(value))}</td></tr>"
        )
    return "".join(parts) + f"<table class='facts'>{''.join(cells)}</table>"


# -- the timeline -------------------------------------------------------------------


def timeline_png(journal: Mapping[str, Any]) -> str:
    """The journal's timeline as a base64 PNG."""
    fig = timeline_figure(journal)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def timeline_figure(journal: Mapping[str, Any]) -> Figure:
    t0 = _origin(journal)
    timeline = journal.get("timeline")
    timeline = timeline if isinstance(timeline, Mapping) else {}
    xs = [(_number(t) or math.nan) - t0 for t in timeline.get("t") or []]
    series = timeline.get("series")
    series = series if isinstance(series, Mapping) else {}
    extra = sorted(k for k in series if k not in KNOWN_SERIES)
    panels = [*PANELS, *((k, k, ((k, k),)) for k in extra)]
    periods = _alert_periods(timeline.get("alerts_firing"), t0)
    names = sorted({name for _, _, name in periods})
    lo, hi = _extent(journal, xs, periods, t0)
    periods = [(a, min(b, hi), name) for a, b, name in periods]

    ratios = [0.55, *([1.5] * len(panels)), max(1.0, 0.32 * len(names) + 0.5)]
    fig, axes = plt.subplots(
        len(ratios),
        1,
        figsize=(11, sum(ratios) * 1.05),
        sharex=True,
        gridspec_kw={"height_ratios": ratios, "hspace": 0.45},
    )
    fault = journal.get("fault")
    window = _window(fault, t0) if isinstance(fault, Mapping) else None
    marks = _marks(journal, t0)

    _phase_strip(axes[0], journal.get("phases"), t0, marks)
    for ax, (title, ylabel, lines) in zip(axes[1:-1], panels, strict=True):
        drawn, peak = 0, 0.0
        for key, label in lines:
            for name, values in _lines(series.get(key), label):
                n = min(len(xs), len(values))
                if n == 0 or all(math.isnan(v) for v in values[:n]):
                    continue
                style = {"drawstyle": "steps-post"} if key == "breaker_open" else {}
                ax.plot(xs[:n], values[:n], lw=1.3, label=name, color=COLOURS.get(name), **style)
                drawn += 1
                peak = max([peak, *(v for v in values[:n] if math.isfinite(v))])
        if _is_breaker(lines):
            ax.set_ylim(-0.1, 1.1)
            ax.set_yticks([0, 1], ["closed", "open"])
        elif drawn:
            # A flat zero (no lag at all) is drawn on a 0..1 scale, not magnified noise.
            ax.set_ylim(0, peak * 1.1 if peak > 0 else 1)
        if not drawn:
            _no_data(ax, "no data")
        elif len(lines) > 1 or drawn > 1:
            ax.legend(loc="upper left", fontsize=7, ncol=3)
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_ylabel(ylabel, fontsize=8)
        _decorate(ax, window, marks)
    _alert_bands(axes[-1], periods, names, window, marks)
    axes[-1].set_xlabel("seconds since the drill started")
    axes[-1].set_xlim(lo, hi)
    _legend(axes[1], window, marks)
    return fig


def _is_breaker(lines: Sequence[tuple[str, str]]) -> bool:
    return any(key == "breaker_open" for key, _ in lines)


@dataclass(frozen=True)
class _Mark:
    at: float  # seconds since t0
    label: str
    colour: str
    style: str


def _marks(journal: Mapping[str, Any], t0: float) -> list[_Mark]:
    """Detection, recovery and abort moments, in seconds since t0."""
    marks = []
    fault = _section(journal, "fault")
    began = _number(fault.get("start"))
    ended = _number(fault.get("end"))
    detect = _number(journal.get("time_to_detect"))
    if began is not None and detect is not None:
        marks.append(_Mark(began - t0 + detect, f"detected +{detect:.1f} s", "tab:purple", ":"))
    recover = _number(journal.get("time_to_recover"))
    if ended is not None and recover is not None:
        marks.append(_Mark(ended - t0 + recover, f"recovered +{recover:.1f} s", "tab:green", "--"))
    abort = journal.get("abort")
    at = _number(abort.get("at")) if isinstance(abort, Mapping) else None
    if at is not None:
        marks.append(_Mark(at - t0, "abort", "black", "-."))
    return marks


def _window(fault: Mapping[str, Any], t0: float) -> tuple[float, float] | None:
    began, ended = _number(fault.get("start")), _number(fault.get("end"))
    if began is None:
        return None
    return (began - t0, (ended if ended is not None else began) - t0)


def _decorate(ax: Axes, window: tuple[float, float] | None, marks: list[_Mark]) -> None:
    if window is not None:
        ax.axvspan(*window, color="tab:red", alpha=0.10, lw=0)
    for mark in marks:
        ax.axvline(mark.at, color=mark.colour, ls=mark.style, lw=1.1)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)


def _legend(ax: Axes, window: tuple[float, float] | None, marks: list[_Mark]) -> None:
    """The markers' key, once, on the first data panel (right, clear of its own legend)."""
    handles: list[Any] = []
    if window is not None:
        handles.append(Patch(color="tab:red", alpha=0.2, label="fault window"))
    handles += [Line2D([], [], color=m.colour, ls=m.style, label=m.label) for m in marks]
    if handles:
        ax.add_artist(ax.legend(handles=handles, loc="upper right", fontsize=7, ncol=4))


def _phase_strip(ax: Axes, phases: Any, t0: float, marks: list[_Mark]) -> None:
    spans = []
    for phase in phases or []:
        if isinstance(phase, Mapping):
            a, b = _number(phase.get("start")), _number(phase.get("end"))
            if a is not None and b is not None:
                spans.append((a - t0, b - t0, str(phase.get("name", ""))))
    whole = max((b for _, b, _ in spans), default=1.0) - min((a for a, _, _ in spans), default=0.0)
    for n, (a, b, name) in enumerate(spans):
        colour = PHASE_COLOURS[n % len(PHASE_COLOURS)]
        ax.broken_barh([(a, b - a)], (0, 1), color=colour, edgecolor="#9e9e9e", lw=0.5)
        # A short phase (inject, remove: a second or two) is labelled low and small, so
        # that it does not print over its neighbours' names.
        narrow = (b - a) < 0.08 * whole
        ax.text((a + b) / 2, 0.22 if narrow else 0.5, name, ha="center", va="center",
                fontsize=6.5 if narrow else 8, clip_on=True)  # fmt: skip
    drawn = len(spans)
    if not drawn:
        _no_data(ax, "no phases recorded")
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for mark in marks:
        ax.axvline(mark.at, color=mark.colour, ls=mark.style, lw=1.1)
        ax.text(mark.at, 1.08, mark.label, transform=top, ha="center", va="bottom", fontsize=7,
                color=mark.colour)  # fmt: skip
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_title("Phases", fontsize=9, loc="left", pad=14)
    ax.tick_params(labelsize=7)


def _alert_bands(
    ax: Axes,
    periods: list[tuple[float, float, str]],
    names: list[str],
    window: tuple[float, float] | None,
    marks: list[_Mark],
) -> None:
    for a, b, name in periods:
        row = names.index(name)
        ax.broken_barh([(a, max(b - a, 0.2))], (row + 0.15, 0.7), color="tab:red", alpha=0.75)
    if names:
        ax.set_yticks([n + 0.5 for n in range(len(names))], names, fontsize=7)
        ax.set_ylim(0, len(names))
    else:
        ax.set_yticks([])
        _no_data(ax, "no alert fired")
    ax.set_title("Alerts firing", fontsize=9, loc="left")
    _decorate(ax, window, marks)


def _alert_periods(items: Any, t0: float) -> list[tuple[float, float, str]]:
    periods = []
    for item in items or []:
        if not isinstance(item, Mapping):
            continue
        a = _number(item.get("start"))
        if a is None:
            continue
        b = _number(item.get("end"))
        # Still firing when the journal was written: draw it to the end.
        periods.append((a - t0, math.inf if b is None else b - t0, str(item.get("name", "?"))))
    return periods


def _extent(
    journal: Mapping[str, Any], xs: list[float], periods: list[tuple[float, float, str]], t0: float
) -> tuple[float, float]:
    points = [x for x in xs if not math.isnan(x)]
    for key in ("start", "end"):
        value = _number(journal.get(key))
        if value is not None:
            points.append(value - t0)
    points += [a for a, _, _ in periods]
    points += [b for _, b, _ in periods if math.isfinite(b)]
    if not points:
        return (0.0, 1.0)
    lo, hi = min(points), max(points)
    return (lo, hi if hi > lo else lo + 1.0)


def _lines(values: Any, label: str) -> list[tuple[str, list[float]]]:
    """A series is a list of numbers, or {name: list} for one line per name
    (e.g. consumer lag per group); null samples are gaps."""
    if isinstance(values, Mapping):
        return [(str(name), _floats(v)) for name, v in sorted(values.items())]
    if isinstance(values, list):
        return [(label, _floats(values))]
    return []


def _floats(values: Any) -> list[float]:
    if not isinstance(values, list):
        return []
    out = []
    for v in values:
        number = 1.0 if v is True else 0.0 if v is False else _number(v)
        out.append(math.nan if number is None else number)
    return out


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#757575",
            fontsize=9, style="italic")  # fmt: skip


# -- the suite ----------------------------------------------------------------------


def fault_missed(journal: Mapping[str, Any]) -> bool:
    """The fault did not take effect: the runner said so (a kill that found nothing
    mid-batch), or a probe that shows it (`fault_effect`) failed during it."""
    if _section(journal, "fault").get("took_effect") is False:
        return True
    during = _section(_section(journal, "steady_states"), "during")
    probes = during.get("probes") or []
    return any(
        isinstance(p, Mapping) and p.get("fault_effect") and not p.get("met") for p in probes
    )


@dataclass(frozen=True)
class SummaryRow:
    drill: str
    status: str
    without_defence: bool
    fault_missed: bool
    time_to_detect: float | None
    time_to_recover: float | None
    errors_5xx: float | None
    requests: float | None
    lost: float | None
    duplicated: float | None
    alerts_expected: int
    alerts_fired: int  # expected and fired in time
    alerts_unexpected: int  # unexpected, or forbidden and fired
    report: str  # file name of the drill's report

    @property
    def verdict(self) -> str:
        if not self.without_defence:
            return self.status
        if self.fault_missed:
            return f"{self.status}, INCONCLUSIVE: the fault took no effect"
        if self.status == "failed":
            return "failed (defence off, as it must)"
        return f"{self.status} WITH DEFENCE OFF: proves nothing"

    @property
    def good(self) -> bool:
        if self.without_defence:
            return self.status == "failed" and not self.fault_missed
        return self.status == "passed"


def summary_rows(journals: Iterable[Mapping[str, Any]]) -> list[SummaryRow]:
    rows = []
    for journal in journals:
        alerts = _section(journal, "alerts")
        expected = [e for e in alerts.get("expected") or [] if isinstance(e, Mapping)]
        fired = 0
        for exp in expected:
            within, after = _number(exp.get("within_seconds")), _number(exp.get("fired_after"))
            fired += after is not None and (within is None or after <= within)
        wrong = {
            str(f.get("name"))
            for f in alerts.get("forbidden") or []
            if isinstance(f, Mapping) and f.get("fired")
        }
        wrong |= {
            str(u.get("name") if isinstance(u, Mapping) else u)
            for u in alerts.get("unexpected") or []
        }
        load, accounting = _section(journal, "load"), _section(journal, "accounting")
        rows.append(
            SummaryRow(
                drill=str(journal.get("drill") or "?"),
                status=str(journal.get("status") or "unknown"),
                without_defence=bool(journal.get("without_defence")),
                fault_missed=fault_missed(journal),
                time_to_detect=_number(journal.get("time_to_detect")),
                time_to_recover=_number(journal.get("time_to_recover")),
                errors_5xx=_number(load.get("errors_5xx")),
                requests=_number(load.get("requests")),
                lost=_number(accounting.get("lost")),
                duplicated=_number(accounting.get("duplicated")),
                alerts_expected=len(expected),
                alerts_fired=fired,
                alerts_unexpected=len(wrong),
                report=report_name(journal),
            )
        )
    return rows


SUMMARY_COLUMNS = (
    "drill",
    "verdict",
    "time to detect",
    "time to recover",
    "5xx seen",
    "events lost / duplicated",
    "alerts expected / fired / unexpected",
)


def _cells(row: SummaryRow) -> tuple[str, ...]:
    five = _count(row.errors_5xx)
    if row.requests is not None:
        five += f" of {_count(row.requests)}"
    return (
        row.drill,
        row.verdict,
        _seconds(row.time_to_detect),
        _seconds(row.time_to_recover),
        five,
        f"{_count(row.lost)} / {_count(row.duplicated)}",
        f"{row.alerts_expected} / {row.alerts_fired} / {row.alerts_unexpected}",
    )


def summary_table(journals: Iterable[Mapping[str, Any]]) -> str:
    """The summary of a drill run, for the terminal."""
    rows = summary_rows(journals)
    cells = [_cells(row) for row in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(SUMMARY_COLUMNS)]
    numeric = {2, 3, 4}

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in numeric else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    head = line(SUMMARY_COLUMNS)
    out = [head, "-" * len(head), *(line(c) for c in cells)]
    good = sum(row.good for row in rows)
    out.append("")
    out.append(f"{good} of {len(rows)} drill(s) ended as they must")
    return "\n".join(out)


def write_index(journals: Iterable[Mapping[str, Any]], out: Path) -> Path:
    """Write `<out>/index.html` for a run of several drills and return its path. The
    reports it links to are `write_report`'s, beside it."""
    journals = list(journals)
    out.mkdir(parents=True, exist_ok=True)
    rows = summary_rows(journals)
    head = "".join(f"<th>{_e(h)}</th>" for h in SUMMARY_COLUMNS)
    body = []
    for row in rows:
        cells = _cells(row)
        colour = VERDICT_COLOURS.get(row.status, "#616161")
        wrong = (row.lost or 0) > 0 or (row.duplicated or 0) > 0
        # Without its defence a drill is meant to miss: only the verdict matters there.
        missed = not row.without_defence and (
            row.alerts_fired < row.alerts_expected or row.alerts_unexpected > 0
        )
        body.append(
            f"<tr class='{'ok' if row.good else 'bad'}'>"
            f"<td><a href='{_e(row.report)}'>{_e(cells[0])}</a></td>"
            f"<td><span class='verdict' style='background:{colour}'>{_e(cells[1])}</span></td>"
            f"<td class='num'>{_e(cells[2])}</td><td class='num'>{_e(cells[3])}</td>"
            f"<td class='num'>{_e(cells[4])}</td>"
            f"<td class='{'hot' if wrong else ''}'>{_e(cells[5])}</td>"
            f"<td class='{'hot' if missed else ''}'>{_e(cells[6])}</td></tr>"
        )
    run_ids = sorted({str(j.get("run_id")) for j in journals if j.get("run_id")})
    good = sum(row.good for row in rows)
    table = fidelity(journals)
    page = (
        f"<h1>Drill run {_e(', '.join(run_ids) or '')}</h1>"
        f"<p>{good} of {len(rows)} drill(s) ended as they must; alert precision "
        f"{format_ratio(table.precision)}, recall {format_ratio(table.recall)}.</p>"
        f"<h2>Summary</h2><table><tr>{head}</tr>{''.join(body)}</table>"
        f"{fidelity_html(table)}"
    )
    path = out / "index.html"
    path.write_text(_page(f"Drill run {', '.join(run_ids)}", page))
    return path


def fidelity_html(table: FidelityTable) -> str:
    head = (
        "<tr><th>alert</th><th>expected and fired (time to fire)</th><th>expected and missed</th>"
        "<th>fired unexpectedly</th><th>precision</th><th>recall</th></tr>"
    )
    rows = []
    for a in table.alerts:
        fired = ", ".join(f"{f.drill} ({f.fired_after:.1f} s)" for f in a.fired) or "-"
        missed = ", ".join(f"{m.drill} ({m.reason})" for m in a.missed) or "-"
        wrong = (
            ", ".join(u.drill + (" (forbidden)" if u.forbidden else "") for u in a.unexpected)
            or "-"
        )
        perfect = a.fn == 0 and a.fp == 0
        rows.append(
            f"<tr class='{'ok' if perfect else 'bad'}'><td>{_e(a.name)}</td><td>{_e(fired)}</td>"
            f"<td class='{'hot' if a.missed else ''}'>{_e(missed)}</td>"
            f"<td class='{'hot' if a.unexpected else ''}'>{_e(wrong)}</td>"
            f"<td class='num'>{format_ratio(a.precision)}</td>"
            f"<td class='num'>{format_ratio(a.recall)}</td></tr>"
        )
    rows.append(
        f"<tr class='total'><th>suite ({len(table.drills)} drills)</th>"
        f"<td>{table.tp} fired</td><td>{table.fn} missed</td>"
        f"<td>{table.fp} unexpected</td><td class='num'>{format_ratio(table.precision)}</td>"
        f"<td class='num'>{format_ratio(table.recall)}</td></tr>"
    )
    note = (
        f"<p class='note'>Excluded (run without their defence, meant to fail): "
        f"{_e(', '.join(table.excluded))}.</p>"
        if table.excluded
        else ""
    )
    return f"<h2>Alert fidelity</h2><table>{head}{''.join(rows)}</table>{note}"


# -- helpers ------------------------------------------------------------------------

_STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1000px;color:#212121}
table{border-collapse:collapse;margin-bottom:1em}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left;vertical-align:top}
table.facts th{background:#fafafa;width:11em}
tr.ok{background:#efe}tr.bad{background:#fdd}tr.skip{color:#757575}tr.group td{font-weight:bold}
tr.bad th,td.hot{background:#fbb;font-weight:bold}tr.total{background:#eee}td.num{text-align:right}
.verdict{color:#fff;padding:1px 8px;border-radius:4px;font-size:80%}
.badge{background:#6a1b9a;color:#fff;padding:1px 8px;border-radius:4px;font-size:60%}
p.without{background:#f3e5f5;padding:6px 10px;border-left:4px solid #6a1b9a}
.nodata,.note{color:#757575;font-style:italic}
pre{margin:0;white-space:pre-wrap;overflow-wrap:anywhere;font-size:12px}
img{max-width:100%}"""


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )


def _origin(journal: Mapping[str, Any]) -> float:
    start = _number(journal.get("start"))
    if start is not None:
        return start
    timeline = journal.get("timeline")
    ts = timeline.get("t") if isinstance(timeline, Mapping) else None
    first = [_number(t) for t in ts or []]
    return next((t for t in first if t is not None), 0.0)


def _section(journal: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = journal.get(key)
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def _span(a: Any, b: Any) -> float | None:
    x, y = _number(a), _number(b)
    return None if x is None or y is None else y - x


def _seconds(value: Any) -> str:
    number = _number(value)
    return "-" if number is None else f"{number:.1f} s"


def _rel(t: Any, t0: float) -> str:
    number = _number(t)
    return "-" if number is None else f"+{number - t0:.1f} s"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _utc(t: Any) -> str:
    number = _number(t)
    if number is None:
        return "-"
    return datetime.fromtimestamp(number, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _tolerance(tolerance: Any) -> str:
    if isinstance(tolerance, Mapping):
        return ", ".join(f"{k} {_value(v)}" for k, v in tolerance.items()) or "-"
    return _value(tolerance)


def _yes_no(value: Any) -> str:
    return "yes" if value is True else "NO" if value is False else "-"


def _cls(met: Any) -> str:
    return "ok" if met is True else "bad" if met is False else ""


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "drill"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)
