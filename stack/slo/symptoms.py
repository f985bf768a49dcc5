"""The drill profile of the symptom alerts (alerts/*.yml): the same rules with every
`for:` and every range selector divided by the drill factor, so a breaker open for
2 minutes in production is one open for 2 seconds in a drill, and a 15-minute
`increase()` looks back 15 seconds.

A threshold that is itself a duration (an outbox row waiting more than 60 s) is scaled
too, but only where the rule says so with the annotation `threshold_unit: seconds`:
a count or a ratio must never shrink with the clock. The copies go to
`alerts/rules-drill/symptoms-<file>.yml`; `astra up --drill` loads those instead of
the originals (stack.observe.monitoring.rule_files).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from stack.slo.durations import duration, seconds

_RANGE = re.compile(r"\[(\d+[smhd](?:\d+[smhd])*)\]")
_TRAILING_THRESHOLD = re.compile(r"(>=?|<=?)\s*([0-9.]+)\s*$")


def _scaled(text: str, factor: int) -> str:
    return duration(max(1, seconds(text) // factor))


def drill_rule(rule: dict[str, Any], factor: int) -> dict[str, Any]:
    out = dict(rule)
    expr = str(rule["expr"])
    expr = _RANGE.sub(lambda m: f"[{_scaled(m.group(1), factor)}]", expr)
    if rule.get("annotations", {}).get("threshold_unit") == "seconds":
        match = _TRAILING_THRESHOLD.search(expr.rstrip())
        if match is None:
            raise ValueError(f"{rule.get('alert')}: threshold_unit seconds, no `> N` at the end")
        scaled = float(match.group(2)) / factor
        expr = expr.rstrip()[: match.start()] + f"{match.group(1)} {scaled:g}"
    out["expr"] = expr
    if "for" in rule:
        out["for"] = _scaled(str(rule["for"]), factor)
    out["annotations"] = {**rule.get("annotations", {}), "profile": f"drill (times / {factor})"}
    return out


def drill_copies(alerts: Path, factor: int, rules_dir: str = "rules-drill") -> dict[Path, str]:
    """alerts/rules-drill/symptoms-<name>.yml for each alerts/<name>.yml."""
    files: dict[Path, str] = {}
    for source in sorted(alerts.glob("*.yml")):
        doc = yaml.safe_load(source.read_text())
        groups = [
            {**group, "rules": [drill_rule(r, factor) for r in group["rules"]]}
            for group in doc["groups"]
        ]
        head = (
            f"# Generated from alerts/{source.name} by `make alerts` (stack/slo/symptoms.py): "
            f"drill profile, every `for:` and range / {factor}. Do not edit.\n"
        )
        body = yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000)
        files[alerts / rules_dir / f"symptoms-{source.name}"] = head + body
    return files
