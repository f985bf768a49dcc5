"""Every metric defined in code is in docs/observability.md (name, type, labels), and
after real traffic no label value is a raw path, an ID or a user name."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts.services import SERVICES
from tests.observability.conftest import ObservedStack

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "observability.md"
CODE_DIRS = ("backbone", "gateway", "services", "chaos", "stack")
DEFINITION = re.compile(
    r"\b(Counter|Gauge|Histogram|Summary|Info|Enum|CounterMetricFamily|GaugeMetricFamily|"
    r"HistogramMetricFamily|SummaryMetricFamily)\(\s*\"(astra_\w+)\""
    r"(?P<rest>.{0,600}?)\)\s*$",
    re.S | re.M,
)
LABELS = re.compile(r"(?:labels=|,\s*)\[([^\]]*)\]")
ROW = re.compile(r"^\| `(astra_\w+)` \| (\w+) \| ([^|]*) \|", re.M)


def defined_in_code() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Exposed name -> (type, labels) of every astra_* metric constructed in code."""
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for folder in CODE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for match in DEFINITION.finditer(path.read_text()):
                kind = match.group(1).removesuffix("MetricFamily").lower()
                name = match.group(2)
                if kind == "counter" and not name.endswith("_total"):
                    name += "_total"  # a CounterMetricFamily is exposed with the suffix
                labels = LABELS.search(match.group("rest"))
                names = tuple(re.findall(r"\"(\w+)\"", labels.group(1))) if labels else ()
                found[name] = (kind, names)
    return found


def documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    return {
        name: (kind, tuple(re.findall(r"`(\w+)`", labels)))
        for name, kind, labels in ROW.findall(DOC.read_text())
    }


def test_the_scanner_sees_the_known_metrics() -> None:
    code = defined_in_code()
    assert code["astra_http_server_requests_total"] == (
        "counter",
        ("method", "route", "status", "slo_class"),
    )
    assert code["astra_outbox_backlog_events"] == ("gauge", ())
    assert code["astra_faultproxy_received_bytes_total"][0] == "counter"
    assert len(code) >= 40


def test_every_metric_in_code_is_in_the_catalogue() -> None:
    code, doc = defined_in_code(), documented()
    missing = sorted(set(code) - set(doc))
    assert not missing, f"add to the table in {DOC.relative_to(ROOT)}: {missing}"
    wrong = {n: (code[n], doc[n]) for n in code if code[n] != doc[n]}
    assert not wrong, f"(code, doc) type/labels differ: {wrong}"
    stale = sorted(set(doc) - set(code))
    assert not stale, f"documented but defined nowhere: {stale}"


UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)


def _route_is_a_template(route: str) -> bool:
    if route == "<unmatched>":
        return True
    if not route.startswith("/"):
        return False
    for segment in route.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            continue
        if segment.isdigit() or UUID.search(segment) or not re.fullmatch(r"[a-z0-9_.-]*", segment):
            return False
    return True


@pytest.mark.e2e
def test_label_values_are_bounded_after_traffic(observed: ObservedStack) -> None:
    traffic = observed.traffic
    secrets = {traffic.username, str(traffic.order["order_id"])}
    children = observed.stack.info["children"]  # type: ignore[attr-defined]
    urls = [c["url"] for c in children if c["name"].split("-")[0] in {*SERVICES, "gateway"}]
    routes: set[str] = set()
    with httpx.Client(timeout=5) as http:
        for url in urls:
            text = http.get(f"{url}/metrics").text
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if not sample.name.startswith("astra_"):
                        continue
                    for label, value in sample.labels.items():
                        assert not any(s in value for s in secrets), (url, sample)
                        assert not UUID.search(value), (url, sample)
                        if label == "route":
                            routes.add(value)
    assert "/api/v1/trading/orders/{order_id}" in routes  # the templated ID route was hit
    bad = sorted(r for r in routes if not _route_is_a_template(r))
    assert not bad, f"route labels that are not templates: {bad}"


def test_route_check_itself() -> None:
    assert _route_is_a_template("/api/v1/nft/collection/{token_id}")
    assert _route_is_a_template("<unmatched>")
    assert not _route_is_a_template("/api/v1/nft/collection/123")
    assert not _route_is_a_template("/api/v1/trading/orders/0b7c4a1e-0000-4000-8000-000000000000")
    assert not _route_is_a_template("/no/such/Alice")
