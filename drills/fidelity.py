"""Alert fidelity across a suite of drill journals: did each alert fire where a drill
expected it, and only there?

Per alert and per drill, one outcome:

    expected, fired within its window   -> true positive  (with the time to fire)
    expected, not fired or fired late   -> false negative (a miss)
    fired unexpectedly, or forbidden
      and fired                         -> false positive

precision = TP / (TP + FP), recall = TP / (TP + FN), per alert and over the suite
(summed over every alert). A journal run `--without-defence` is excluded: it is meant
to fail, so what it fires says nothing about the alerts. An alert the suite never
expected nor saw fire has no precision nor recall (`None`), which is not 1.0.

    table = fidelity(journals)
    print(table.table())
    json.dumps(table.to_json())
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Fired:
    """An expected alert that fired within its window."""

    drill: str
    fired_after: float  # seconds after the fault began
    within_seconds: float | None


@dataclass(frozen=True)
class Missed:
    """An expected alert that did not fire, or fired after its window."""

    drill: str
    within_seconds: float | None
    fired_after: float | None  # set when it fired, but late

    @property
    def reason(self) -> str:
        if self.fired_after is None:
            return "never fired"
        return f"late: {self.fired_after:.1f} s > {self.within_seconds:.1f} s"


@dataclass(frozen=True)
class Unexpected:
    """An alert that fired in a drill that did not expect it."""

    drill: str
    forbidden: bool  # the drill named it as one that must not fire


@dataclass
class AlertFidelity:
    name: str
    fired: list[Fired] = field(default_factory=list)
    missed: list[Missed] = field(default_factory=list)
    unexpected: list[Unexpected] = field(default_factory=list)
    quiet: list[str] = field(default_factory=list)  # forbidden and held quiet: the controls

    @property
    def tp(self) -> int:
        return len(self.fired)

    @property
    def fn(self) -> int:
        return len(self.missed)

    @property
    def fp(self) -> int:
        return len(self.unexpected)

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tp": self.tp,
            "fn": self.fn,
            "fp": self.fp,
            "precision": self.precision,
            "recall": self.recall,
            "fired": [
                {"drill": f.drill, "fired_after": f.fired_after, "within_seconds": f.within_seconds}
                for f in self.fired
            ],
            "missed": [
                {
                    "drill": m.drill,
                    "within_seconds": m.within_seconds,
                    "fired_after": m.fired_after,
                    "reason": m.reason,
                }
                for m in self.missed
            ],
            "unexpected": [{"drill": u.drill, "forbidden": u.forbidden} for u in self.unexpected],
            "quiet_where_forbidden": list(self.quiet),
        }


@dataclass
class FidelityTable:
    alerts: list[AlertFidelity]
    drills: list[str]  # the drills counted
    excluded: list[str]  # run --without-defence: not counted

    @property
    def tp(self) -> int:
        return sum(a.tp for a in self.alerts)

    @property
    def fn(self) -> int:
        return sum(a.fn for a in self.alerts)

    @property
    def fp(self) -> int:
        return sum(a.fp for a in self.alerts)

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    def get(self, name: str) -> AlertFidelity | None:
        return next((a for a in self.alerts if a.name == name), None)

    def table(self) -> str:
        width = max([len("alert"), len("suite"), *(len(a.name) for a in self.alerts)])
        head = (
            f"{'alert':<{width}}  {'fired':>5}  {'missed':>6}  {'unexpected':>10}  "
            f"{'precision':>9}  {'recall':>6}"
        )
        lines = [head, "-" * len(head)]
        for a in self.alerts:
            lines.append(_row(a.name, width, a.tp, a.fn, a.fp, a.precision, a.recall))
            if a.fired:
                lines.append(
                    "    fired in: "
                    + ", ".join(f"{f.drill} ({f.fired_after:.1f} s)" for f in a.fired)
                )
            if a.missed:
                lines.append(
                    "    missed in: " + ", ".join(f"{m.drill} ({m.reason})" for m in a.missed)
                )
            if a.unexpected:
                wrong = (u.drill + (" (forbidden)" if u.forbidden else "") for u in a.unexpected)
                lines.append("    fired unexpectedly in: " + ", ".join(wrong))
        lines.append("-" * len(head))
        lines.append(_row("suite", width, self.tp, self.fn, self.fp, self.precision, self.recall))
        lines.append(f"over {len(self.drills)} drill(s)")
        if self.excluded:
            lines.append(
                "excluded (run --without-defence, meant to fail): " + ", ".join(self.excluded)
            )
        if not self.alerts:
            lines.append("no alert was expected, forbidden or seen")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fn": self.fn,
            "fp": self.fp,
            "precision": self.precision,
            "recall": self.recall,
            "drills": list(self.drills),
            "excluded": list(self.excluded),
            "alerts": [a.to_json() for a in self.alerts],
        }


def fidelity(journals: Iterable[Mapping[str, Any]]) -> FidelityTable:
    """The alert fidelity table of a suite of drill journals."""
    alerts: dict[str, AlertFidelity] = {}
    drills: list[str] = []
    excluded: list[str] = []

    def row(name: str) -> AlertFidelity:
        return alerts.setdefault(name, AlertFidelity(name))

    for journal in journals:
        drill = str(journal.get("drill") or "?")
        if journal.get("without_defence"):
            excluded.append(drill)
            continue
        drills.append(drill)
        section = journal.get("alerts")
        section = section if isinstance(section, Mapping) else {}
        for exp in _mappings(section.get("expected")):
            name = str(exp.get("name"))
            within = _number(exp.get("within_seconds"))
            after = _number(exp.get("fired_after"))
            if after is not None and (within is None or after <= within):
                row(name).fired.append(Fired(drill, after, within))
            else:
                row(name).missed.append(Missed(drill, within, after))
        # One false positive per alert and drill, though a forbidden alert that fired
        # may be listed in `unexpected` as well.
        wrong: dict[str, bool] = {}
        for forbidden in _mappings(section.get("forbidden")):
            name = str(forbidden.get("name"))
            if forbidden.get("fired"):
                wrong[name] = True
            else:
                row(name).quiet.append(drill)
        for item in section.get("unexpected") or []:
            name = str(item.get("name") if isinstance(item, Mapping) else item)
            wrong.setdefault(name, False)
        for name, was_forbidden in wrong.items():
            row(name).unexpected.append(Unexpected(drill, was_forbidden))
    return FidelityTable(sorted(alerts.values(), key=lambda a: a.name), drills, excluded)


def format_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _row(name: str, width: int, tp: int, fn: int, fp: int, p: float | None, r: float | None) -> str:
    return (
        f"{name:<{width}}  {tp:>5}  {fn:>6}  {fp:>10}  {format_ratio(p):>9}  {format_ratio(r):>6}"
    )


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def _mappings(items: Any) -> list[Mapping[str, Any]]:
    return [item for item in items or [] if isinstance(item, Mapping)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)
