"""`astra trace`: one request's spans from every process, as a tree.

    <run_dir>/traces/*.jsonl ── spans of the trace ──> tree by parent_id, children by start

The argument is a trace ID, or a correlation ID resolved through the span attribute
`astra.correlation_id` (set on every server span) or, failing that, the JSON logs,
whose lines carry both IDs.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
CORRELATION_ATTRIBUTE = "astra.correlation_id"

Span = dict[str, Any]


def json_lines(files: Iterable[Path], needle: str) -> Iterator[dict[str, Any]]:
    """Objects of the lines that contain `needle` (a cheap filter before parsing)."""
    raw = needle.encode()
    for path in sorted(files):
        with path.open("rb") as lines:
            for line in lines:
                if raw not in line:
                    continue
                try:
                    item = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a line being written right now
                if isinstance(item, dict):
                    yield item


def resolve_trace_ids(run_dir: Path, ident: str) -> list[str]:
    """Trace IDs `ident` names: itself, or the traces of a correlation ID (oldest first)."""
    traces = list((run_dir / "traces").glob("*.jsonl"))
    if TRACE_ID.fullmatch(ident) and any(
        s.get("trace_id") == ident for s in json_lines(traces, ident)
    ):
        return [ident]
    found: dict[str, int] = {}
    for span in json_lines(traces, ident):
        if (span.get("attributes") or {}).get(CORRELATION_ATTRIBUTE) == ident:
            trace_id = str(span["trace_id"])
            found[trace_id] = min(found.get(trace_id, span["start_ns"]), span["start_ns"])
    if not found:
        for line in json_lines((run_dir / "log").glob("*.jsonl"), ident):
            if line.get("correlation_id") == ident and line.get("trace_id"):
                found.setdefault(str(line["trace_id"]), len(found))
    return sorted(found, key=lambda t: found[t])


def load_trace(run_dir: Path, trace_id: str) -> list[Span]:
    spans = [
        s
        for s in json_lines((run_dir / "traces").glob("*.jsonl"), trace_id)
        if s.get("trace_id") == trace_id
    ]
    return sorted(spans, key=lambda s: s.get("start_ns", 0))


def tree(spans: list[Span]) -> list[tuple[int, Span]]:
    """(depth, span) in display order; spans whose parent is missing become roots."""
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[Span]] = defaultdict(list)
    for span in spans:
        parent = span.get("parent_id")
        children[parent if parent in ids else None].append(span)
    out: list[tuple[int, Span]] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, ()), key=lambda s: s.get("start_ns", 0)):
            out.append((depth, span))
            walk(span["span_id"], depth + 1)

    walk(None, 0)
    return out


def render(trace_id: str, spans: list[Span]) -> str:
    if not spans:
        return f"trace {trace_id}: no spans"
    start = min(s["start_ns"] for s in spans)
    end = max(s["start_ns"] + s["duration_ms"] * 1e6 for s in spans)
    services = sorted({str(s.get("service")) for s in spans})
    lines = [
        f"trace {trace_id}  {len(spans)} spans  {(end - start) / 1e6:.1f} ms  "
        f"services: {', '.join(services)}"
    ]
    rows = tree(spans)
    width = max(2 * d + len(str(s.get("service"))) + len(s["name"]) for d, s in rows) + 3
    for depth, span in rows:
        status = "ERROR" if span.get("status") == "error" else "ok"
        label = f"{'  ' * depth}{span.get('service')}  {span['name']}"
        offset = (span["start_ns"] - start) / 1e6
        lines.append(
            f"{label.ljust(width)} {span['duration_ms']:>9.2f} ms  +{offset:>8.2f} ms  "
            f"{status:<5}  {span.get('kind', '')}  {span.get('instance', '')}"
        )
    return "\n".join(lines)


def trace_command(run_dir: Path, ident: str, *, as_json: bool = False) -> int:
    trace_ids = resolve_trace_ids(run_dir, ident)
    if not trace_ids:
        print(f"no trace found for {ident!r} under {run_dir}/traces (or {run_dir}/log)")
        return 1
    for trace_id in trace_ids:
        spans = load_trace(run_dir, trace_id)
        if as_json:
            for span in spans:
                print(orjson.dumps(span).decode())
        else:
            print(render(trace_id, spans))
            print()
    return 0
