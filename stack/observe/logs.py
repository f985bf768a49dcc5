"""`astra logs --correlation-id ID`: every process's log lines of one request, in time order.

Each process writes JSON lines to `<run_dir>/log/<instance>.jsonl` with `ts` (ISO 8601,
UTC, microseconds: sortable as text) and the `correlation_id` of the work in progress.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from stack.observe.traces import json_lines

# Fields every line has; the rest are shown as key=value after the message.
_SHOWN = ("ts", "level", "service", "instance", "logger", "msg")
_HIDDEN = {*_SHOWN, "correlation_id", "trace_id", "span_id", "color_message"}


def lines_of(run_dir: Path, *, correlation_id: str) -> list[dict[str, Any]]:
    found = [
        line
        for line in json_lines((run_dir / "log").glob("*.jsonl"), correlation_id)
        if line.get("correlation_id") == correlation_id
    ]
    return sorted(found, key=lambda line: str(line.get("ts", "")))


def format_line(line: dict[str, Any]) -> str:
    extra = " ".join(f"{k}={v}" for k, v in line.items() if k not in _HIDDEN)
    return (
        f"{line.get('ts', '')}  {line.get('instance', '')!s:<16} "
        f"{line.get('level', '')!s:<7} {line.get('msg', '')}" + (f"  {extra}" if extra else "")
    )


def logs_command(run_dir: Path, *, correlation_id: str, as_json: bool = False) -> int:
    found = lines_of(run_dir, correlation_id=correlation_id)
    if not found:
        print(f"no log line with correlation_id {correlation_id!r} under {run_dir}/log")
        return 1
    for line in found:
        print(orjson.dumps(line).decode() if as_json else format_line(line))
    return 0
