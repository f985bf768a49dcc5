"""Dashboards as code: the committed JSON is what the builders generate, every panel's
PromQL parses on a live Prometheus and names only metrics and labels the stack exposes,
and `astra dashboards render` draws one PNG per dashboard."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.services import SERVICES
from tests.observability.conftest import ObservedStack
from tests.observability.test_metric_catalogue import defined_in_code
from tests.support.poll import poll_until_sync

pytest.importorskip(
    "grafana_foundation_sdk", reason="grafana-foundation-sdk is not installed (dev dependency)"
)
from stack.observe.dashboards import OUT, generate, generated, load, panel_queries
from stack.observe.render import concrete

TARGET_LABELS = {"service", "instance", "job"}
METRIC = re.compile(r"\b((?:astra|probe|redis)_[a-z0-9_]+|up)\b(?!\s*\()")
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without|ignoring|on)\s*\(([^)]*)\)")
RECORDED = re.compile(r"\b(slo:[a-z0-9_:]+|ALERTS)\b")
VARIABLES = {"service": "trading", "slo": ".+"}


def _recorded_slos() -> list[str]:
    from stack.slo.spec import load_spec

    return [
        s.name for s in load_spec(Path(__file__).resolve().parents[2] / "alerts" / "slos.yaml").slos
    ]


def _recorded() -> dict[str, set[str]]:
    """Series the generated SLO rules write (and ALERTS), with their labels."""
    from stack.slo.rules import NORMAL, rule_group
    from stack.slo.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[2] / "alerts" / "slos.yaml")
    found: dict[str, set[str]] = {"ALERTS": {"alertname", "alertstate"}}
    for slo in spec.slos:
        for rule in rule_group(spec, slo, NORMAL)["rules"]:
            labels = set(rule.get("labels", {}))
            if "record" in rule:
                found.setdefault(rule["record"], set()).update(labels | {"sloth_window"})
            else:
                found["ALERTS"] |= labels | set(spec.labels) | set(slo.labels)
                found["ALERTS"] |= {"sloth_id", "sloth_slo", "sloth_service"}
    return found


def test_committed_json_is_what_the_builders_generate() -> None:
    assert sorted(p.name for p in OUT.glob("*.json")) == sorted(generated())
    assert generate(check=True) == 0, "run `astra dashboards generate` and commit dashboards/"


def test_the_four_dashboards_and_their_exemplars() -> None:
    dashboards = load()
    assert {d["title"] for d in dashboards.values()} == {
        "AstraTrade / Stack overview", "AstraTrade / Gateway", "AstraTrade / Event bus",
        "AstraTrade / Service detail", "AstraTrade / SLOs"}  # fmt: skip
    detail = dashboards["service-detail"]
    assert [v["name"] for v in detail["templating"]["list"]] == ["service"]
    assert all('service="$service"' in q for _, q in panel_queries(detail))
    latency = [
        t
        for d in dashboards.values()
        for p in d["panels"]
        for t in p.get("targets", [])
        if "request_duration_seconds_bucket" in t["expr"]
    ]
    assert latency
    assert all(t["exemplar"] for t in latency if "astra_http_server" in t["expr"])


def _exposed(observed: ObservedStack, prometheus: str, http: httpx.Client) -> set[str]:
    names: set[str] = set(http.get(f"{prometheus}/api/v1/label/__name__/values").json()["data"])
    for child in observed.stack.info["children"]:  # type: ignore[attr-defined]
        if child["name"].split("-")[0] in {*SERVICES, "gateway"}:
            text = http.get(f"{child['url']}/metrics").text
            for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
                names.add(name)
                if kind == "histogram":
                    names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return names


def _labels_of(metric: str, prometheus: str, http: httpx.Client) -> set[str]:
    code = defined_in_code()
    base = re.sub(r"_(bucket|count|sum)$", "", metric)
    labels = set(code.get(metric, ("", ()))[1]) | set(code.get(base, ("", ()))[1])
    if metric.endswith("_bucket"):
        labels.add("le")
    series = http.get(f"{prometheus}/api/v1/series", params={"match[]": metric}).json()["data"]
    for s in series:
        labels |= set(s) - {"__name__"}
    return labels | TARGET_LABELS


@pytest.mark.e2e
def test_every_panel_query_parses_and_names_what_exists(observed: ObservedStack) -> None:
    prometheus = observed.prometheus()
    with httpx.Client(timeout=10) as http:
        wanted = ['sum(astra_http_server_requests_total{service="gateway"})']
        absent = set()  # exporters that are not installed expose nothing: skip their metrics
        for process, metric in (("blackbox", "probe_"), ("redis-exporter", "redis_")):
            if observed.has(process):
                wanted.append(f'count({{__name__=~"{metric}.*"}})')
            else:
                absent.add(metric)

        def scraped() -> bool:
            return all(
                http.get(f"{prometheus}/api/v1/query", params={"query": q}).json()["data"]["result"]
                for q in wanted
            )

        poll_until_sync(scraped, f"Prometheus to have scraped {wanted}", 20, 0.25)
        slos = len(_recorded_slos())

        def slo_rules_evaluated() -> bool:  # the generated rules are loaded and evaluated
            q = "count(slo:objective:ratio)"
            result = http.get(f"{prometheus}/api/v1/query", params={"query": q}).json()
            data = result["data"]["result"]
            return bool(data) and int(float(data[0]["value"][1])) == slos

        poll_until_sync(slo_rules_evaluated, f"{slos} slo:objective:ratio series", 20, 0.5)
        exposed = _exposed(observed, prometheus, http)
        recorded = _recorded()
        problems: list[str] = []
        for name, dashboard in load().items():
            for title, expr in panel_queries(dashboard):
                promql = concrete(expr, VARIABLES)
                body: dict[str, Any] = http.get(
                    f"{prometheus}/api/v1/query", params={"query": promql}
                ).json()
                if body["status"] != "success":
                    problems.append(f"{name}/{title}: {body.get('error')}")
                    continue
                metrics = {m for m in METRIC.findall(promql) if not m.startswith(tuple(absent))}
                problems += [f"{name}/{title}: no such metric {m}" for m in metrics - exposed]
                known = set().union(*(_labels_of(m, prometheus, http) for m in metrics))
                for rec in RECORDED.findall(promql):  # the SLO rules' series (and ALERTS)
                    if rec not in recorded:
                        problems.append(f"{name}/{title}: no rule records {rec}")
                    known |= recorded.get(rec, set())
                used = {
                    label
                    for _, matchers in SELECTOR.findall(promql)
                    for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers)
                }
                used |= {x.strip() for g in GROUPING.findall(promql) for x in g.split(",")}
                problems += [f"{name}/{title}: no label {label}" for label in used - known]
    assert not problems, "\n".join(problems)


def test_the_slo_dashboard_names_only_what_the_rules_record() -> None:
    recorded = _recorded()
    queries = panel_queries(load()["slos"])
    assert len(queries) >= 10
    for title, expr in queries:
        names = RECORDED.findall(expr)
        assert names, f"slos/{title}: {expr}"
        for name in names:
            assert name in recorded, f"slos/{title}: {name}"
        used = {
            label
            for _, matchers in SELECTOR.findall(expr)
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers)
        }
        used |= {x.strip() for g in GROUPING.findall(expr) for x in g.split(",")}
        assert used <= set().union(*(recorded[n] for n in names)), f"slos/{title}: {used}"


def test_the_checker_catches_bad_names() -> None:
    assert METRIC.findall("sum(rate(astra_x_total[1m])) / max(up)") == ["astra_x_total", "up"]
    assert GROUPING.findall("sum by (service, le) (x)") == ["service, le"]


@pytest.mark.e2e
def test_render_writes_one_png_per_dashboard(observed: ObservedStack, tmp_path: Path) -> None:
    prometheus = observed.prometheus()
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (dev dependency)")
    done = observed.astra(
        "dashboards", "render", "--prometheus", prometheus, "--run-dir", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    pngs = sorted((tmp_path / "dashboards").glob("*.png"))
    assert [p.stem for p in pngs] == sorted(load())
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 10_000


def test_every_overview_panel_returns_data_after_traffic(observed: ObservedStack) -> None:
    """The Stack overview is what on-call opens first: no panel may sit empty."""
    from stack.observe.render import query_range

    prometheus = observed.prometheus()
    overview = load()["stack-overview"]
    queries = [
        (panel.get("title", "?"), concrete(target["expr"], {}))
        for panel in overview["panels"]
        for target in panel.get("targets", [])
    ]
    assert len(queries) >= 8

    def empty_panels() -> list[str]:
        with httpx.Client(timeout=10) as http:
            return [title for title, expr in queries if not query_range(http, prometheus, expr)]

    last: list[str] = []

    def all_have_data() -> bool:
        nonlocal last
        last = empty_panels()
        return not last

    poll_until_sync(all_have_data, "data in every overview panel", timeout=60, interval=2)
    assert last == []
