"""`astra trace` and `astra logs` on a real stack: one order through the gateway is
one trace across gateway, trading, gamification, nft and social, and one
correlation ID across the processes' logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from stack.observe.traces import render, resolve_trace_ids, tree
from tests.observability.conftest import ObservedStack
from tests.support.poll import poll_until_sync

FLOW = {"gateway", "trading", "gamification", "nft", "social"}


def _spans(observed: ObservedStack, ident: str) -> list[dict[str, Any]]:
    done = observed.astra("trace", ident, "--json")
    if done.returncode != 0:
        return []
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


@pytest.mark.e2e
def test_one_order_is_one_trace_across_every_service(observed: ObservedStack) -> None:
    cid = observed.traffic.order_correlation_id

    def whole_flow() -> list[dict[str, Any]] | None:
        spans = _spans(observed, cid)
        return spans if {s["service"] for s in spans} >= FLOW else None

    spans = poll_until_sync(whole_flow, f"spans of {sorted(FLOW)} under {cid}", 30, 0.5)
    assert len({s["trace_id"] for s in spans}) == 1
    trace_id = spans[0]["trace_id"]
    roots = [s for s in spans if s["parent_id"] not in {x["span_id"] for x in spans}]
    assert [r["service"] for r in roots] == ["gateway"], roots
    # "POST /api/v1/trading/orders" once backbone.telemetry.asgi names the span before it ends
    assert roots[0]["name"].startswith("POST")
    kinds = {(s["service"], s["kind"]) for s in spans}
    assert {("gateway", "server"), ("trading", "server")} <= kinds
    assert {("gamification", "consumer"), ("nft", "consumer"), ("social", "consumer")} <= kinds

    text = observed.astra("trace", trace_id)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"trace {trace_id}")
    header = text.stdout.splitlines()[0]
    assert all(service in header for service in FLOW), header


@pytest.mark.e2e
def test_logs_of_one_correlation_id_come_from_every_hop_in_time_order(
    observed: ObservedStack,
) -> None:
    cid = observed.traffic.order_correlation_id

    def lines() -> list[dict[str, Any]] | None:
        done = observed.astra("logs", "--correlation-id", cid, "--json")
        found = [orjson.loads(x) for x in done.stdout.splitlines()] if done.returncode == 0 else []
        return found if {"gateway-1", "trading-1"} <= {x["instance"] for x in found} else None

    found = poll_until_sync(lines, "gateway and trading log lines of the order", 20, 0.5)
    assert all(x["correlation_id"] == cid for x in found)
    stamps = [x["ts"] for x in found]
    assert stamps == sorted(stamps)
    text = observed.astra("logs", "--correlation-id", cid)
    assert {"gateway-1", "trading-1"} <= {line.split()[1] for line in text.stdout.splitlines()}


def test_unknown_ids_say_so(tmp_path: Path) -> None:
    (tmp_path / "traces").mkdir()
    (tmp_path / "log").mkdir()
    assert resolve_trace_ids(tmp_path, "nope") == []
    assert resolve_trace_ids(tmp_path, "0" * 32) == []


def test_tree_orders_children_and_keeps_orphans() -> None:
    def span(sid: str, parent: str | None, start: int, service: str = "s") -> dict[str, Any]:
        return {
            "trace_id": "t" * 32, "span_id": sid, "parent_id": parent, "name": f"op-{sid}",
            "service": service, "kind": "internal", "start_ns": start, "duration_ms": 1.0,
            "status": "unset", "attributes": {}, "instance": f"{service}-1",
        }  # fmt: skip

    spans = [span("c", "a", 30), span("a", None, 10), span("b", "a", 20), span("o", "gone", 5)]
    assert [(d, s["span_id"]) for d, s in tree(spans)] == [(0, "o"), (0, "a"), (1, "b"), (1, "c")]
    spans.append({**span("e", "a", 40, "nft"), "status": "error"})
    text = render("t" * 32, spans)
    assert "5 spans" in text
    assert "ERROR" in text.splitlines()[-1]
