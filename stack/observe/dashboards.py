"""Dashboards as code: grafana-foundation-sdk builders -> committed JSON in `dashboards/`.

    astra dashboards generate [--check]   write dashboards/*.json (or fail if they differ)
    astra dashboards render               query the running Prometheus, one PNG per dashboard

The SLO dashboard (`slos`) is derived from alerts/slos.yaml like the alert rules.

Every latency panel asks for exemplars, so a point links to its trace (`trace_id`).
Never edit the JSON by hand: change this file and regenerate.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableOption

from stack.generated import write_or_check

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
NOT_PROBES = 'route!~"/health/.*|/metrics"'  # health checks and scrapes are not traffic
RATE = "$__rate_interval"


def _query(expr: str, legend: str = "", *, exemplar: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).datasource(DATASOURCE).range()
    if legend:
        query = query.legend_format(legend)
    return query.exemplar(exemplar)


def _series(
    title: str, unit: str, *queries: prometheus.Dataquery, description: str = ""
) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).height(8).span(12)
    if description:
        panel = panel.description(description)
    for ref, query in zip("ABCDEFGH", queries, strict=False):
        panel = panel.with_target(query.ref_id(ref))
    return panel


def _stat(title: str, unit: str, expr: str, legend: str = "") -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(4)
        .span(6)
        .with_target(_query(expr, legend).ref_id("A"))
    )


def _base(title: str, uid: str, description: str) -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["astratrade", "generated"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
    )


def stack_overview() -> db.Dashboard:
    return (
        _base("AstraTrade / Stack overview", "astra-overview", "Every service at a glance.")
        .with_panel(
            _stat(
                "Gateway 5xx ratio (1h)",
                "percentunit",
                # `or vector(0)`: no 5xx series at all reads 0, not "no data"
                f'(sum(rate(astra_http_server_requests_total{{service="gateway",{NOT_PROBES},'
                f'status=~"5.."}}[1h])) or vector(0)) / sum(rate(astra_http_server_requests_total'
                f'{{service="gateway",{NOT_PROBES}}}[1h]))',
            )
        )
        .with_panel(
            _stat("Instances up", "short", 'sum by (service) (up{job="astra"})', "{{service}}")
        )
        .with_panel(_stat("Max consumer lag", "short", "max(astra_bus_group_lag)"))
        .with_panel(_stat("Gateway probe", "bool", "min(probe_success)"))
        .with_panel(
            _series(
                "Requests per second by service",
                "reqps",
                _query(
                    "sum by (service) (rate("
                    f"astra_http_server_requests_total{{{NOT_PROBES}}}[{RATE}]))",
                    "{{service}}",
                ),
            )
        )
        .with_panel(
            _series(
                "p99 latency by service",
                "s",
                _query(
                    "histogram_quantile(0.99, sum by (service, le) (rate("
                    f"astra_http_server_request_duration_seconds_bucket{{{NOT_PROBES}}}[{RATE}])))",
                    "{{service}}",
                    exemplar=True,
                ),
                description="Exemplars link a point to its trace (trace_id).",
            )
        )
        .with_panel(
            _series(
                "5xx ratio by service",
                "percentunit",
                _query(
                    "(sum by (service) (rate(astra_http_server_requests_total"
                    f'{{{NOT_PROBES},status=~"5.."}}[{RATE}])) or 0 * sum by (service) (rate('
                    f"astra_http_server_requests_total{{{NOT_PROBES}}}[{RATE}])))"
                    " / sum by (service) (rate("
                    f"astra_http_server_requests_total{{{NOT_PROBES}}}[{RATE}]))",
                    "{{service}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Events published and consumed",
                "ops",
                _query(
                    f"sum by (stream) (rate(astra_bus_published_events_total[{RATE}]))",
                    "published {{stream}}",
                ),
                _query(
                    f"sum by (group) (rate(astra_bus_consumed_events_total[{RATE}]))",
                    "consumed {{group}}",
                ),
            )
        )
    )


def gateway() -> db.Dashboard:
    gw = 'service="gateway"'
    return (
        _base("AstraTrade / Gateway", "astra-gateway", "The edge: traffic, upstreams, breakers.")
        .with_panel(
            _series(
                "Requests by route and status",
                "reqps",
                _query(
                    "sum by (route, status) (rate(astra_http_server_requests_total"
                    f"{{{gw},{NOT_PROBES}}}[{RATE}]))",
                    "{{route}} {{status}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Latency p50 / p99",
                "s",
                *(
                    _query(
                        f"histogram_quantile({q}, sum by (le) (rate("
                        f"astra_http_server_request_duration_seconds_bucket{{{gw},{NOT_PROBES}}}"
                        f"[{RATE}])))",
                        f"p{int(q * 100)}",
                        exemplar=True,
                    )
                    for q in (0.5, 0.99)
                ),
                description="SLO: p99 < 300 ms. Exemplars link to traces.",
            )
        )
        .with_panel(
            _series(
                "Upstream attempts by service and outcome",
                "ops",
                _query(
                    "sum by (service, outcome) (rate("
                    f"astra_gateway_upstream_requests_total[{RATE}]))",
                    "{{service}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Upstream p99 by service",
                "s",
                _query(
                    "histogram_quantile(0.99, sum by (service, le) (rate("
                    f"astra_gateway_upstream_request_duration_seconds_bucket[{RATE}])))",
                    "{{service}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Breaker state (0 closed, 1 half-open, 2 open)",
                "short",
                _query("max by (service) (astra_gateway_breaker_state)", "{{service}}"),
            )
        )
        .with_panel(
            _series(
                "Rate-limit decisions, auth failures, fallbacks",
                "ops",
                _query(
                    "sum by (policy, decision) (rate("
                    f"astra_gateway_rate_limit_decisions_total[{RATE}]))",
                    "{{policy}} {{decision}}",
                ),
                _query(
                    f"sum by (reason) (rate(astra_gateway_auth_failures_total[{RATE}]))",
                    "401 {{reason}}",
                ),
                _query(
                    f"sum by (service, kind) (rate(astra_gateway_fallbacks_total[{RATE}]))",
                    "fallback {{service}} {{kind}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Black-box probes",
                "s",
                _query("probe_duration_seconds", "{{probe}}"),
                _query("probe_success", "success {{probe}}"),
            )
        )
    )


def event_bus() -> db.Dashboard:
    return (
        _base("AstraTrade / Event bus", "astra-bus", "Streams, consumer groups, DLQ, outbox.")
        .with_panel(
            _series(
                "Event age p99 by group",
                "s",
                _query(
                    "histogram_quantile(0.99, sum by (group, le) "
                    f"(rate(astra_bus_event_age_seconds_bucket[{RATE}])))",
                    "{{group}}",
                ),
                description="Handled time minus occurred_at: the freshness SLOs (2 s).",
            )
        )
        .with_panel(
            _series(
                "Published by stream and path",
                "ops",
                _query(
                    f"sum by (stream, path) (rate(astra_bus_published_events_total[{RATE}]))",
                    "{{stream}} {{path}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Consumed, duplicates and failures by group",
                "ops",
                _query(
                    f"sum by (group) (rate(astra_bus_consumed_events_total[{RATE}]))",
                    "consumed {{group}}",
                ),
                _query(
                    f"sum by (group) (rate(astra_bus_duplicate_events_total[{RATE}]))",
                    "duplicate {{group}}",
                ),
                _query(
                    f"sum by (group) (rate(astra_bus_handler_failures_total[{RATE}]))",
                    "failed {{group}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Group lag and pending",
                "short",
                _query("max by (stream, group) (astra_bus_group_lag)", "lag {{group}}"),
                _query("max by (stream, group) (astra_bus_pending_events)", "pending {{group}}"),
            )
        )
        .with_panel(
            _series(
                "Oldest pending age",
                "s",
                _query(
                    "max by (stream, group) (astra_bus_oldest_pending_age_seconds)", "{{group}}"
                ),
            )
        )
        .with_panel(
            _series(
                "Handler p99 by group",
                "s",
                _query(
                    "histogram_quantile(0.99, sum by (group, le) (rate("
                    f"astra_bus_handler_duration_seconds_bucket[{RATE}])))",
                    "{{group}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Stream and dead-letter length",
                "short",
                _query("max by (stream) (astra_bus_stream_length)", "{{stream}}"),
                _query("max by (stream) (astra_bus_dead_letter_length)", "dlq {{stream}}"),
                _query("max by (stream) (redis_stream_length)", "redis {{stream}}"),
            )
        )
        .with_panel(
            _series(
                "Outbox backlog and oldest unsent age",
                "short",
                _query("sum by (service) (astra_outbox_backlog_events)", "backlog {{service}}"),
                _query(
                    "max by (service) (astra_outbox_oldest_unsent_age_seconds)",
                    "age s {{service}}",
                ),
            )
        )
    )


def service_detail() -> db.Dashboard:
    svc = 'service="$service"'
    return (
        _base("AstraTrade / Service detail", "astra-service", "One service, chosen above.")
        .with_variable(
            db.QueryVariable("service")
            .label("service")
            .datasource(DATASOURCE)
            .query('label_values(up{job="astra"}, service)')
        )
        .with_panel(
            _series(
                "Requests by route and status",
                "reqps",
                _query(
                    "sum by (route, status) (rate(astra_http_server_requests_total"
                    f"{{{svc},{NOT_PROBES}}}[{RATE}]))",
                    "{{route}} {{status}}",
                ),
            )
        )
        .with_panel(
            _series(
                "p99 latency by route",
                "s",
                _query(
                    "histogram_quantile(0.99, sum by (route, le) (rate("
                    f"astra_http_server_request_duration_seconds_bucket{{{svc},{NOT_PROBES}}}"
                    f"[{RATE}])))",
                    "{{route}}",
                    exemplar=True,
                ),
            )
        )
        .with_panel(
            _series(
                "In flight by instance",
                "short",
                _query(
                    f"sum by (instance) (astra_http_server_requests_in_flight{{{svc}}})",
                    "{{instance}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Events consumed by group",
                "ops",
                _query(
                    f"sum by (group) (rate(astra_bus_consumed_events_total{{{svc}}}[{RATE}]))",
                    "{{group}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Outbox backlog",
                "short",
                _query(f"sum by (instance) (astra_outbox_backlog_events{{{svc}}})", "{{instance}}"),
            )
        )
        .with_panel(
            _series(
                "Registry view from this service",
                "short",
                _query(f"max by (status) (astra_registry_instances{{{svc}}})", "{{status}}"),
                _query(f"max(astra_registry_cache_stale{{{svc}}})", "stale"),
            )
        )
    )


SLO_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")  # stack.slo.rules.WINDOWS


def slos() -> db.Dashboard:
    """The SLOs of alerts/slos.yaml, from the rules `make alerts` derives (Sloth's names).

    `$slo` selects SLOs (an alert's dashboard_url sets it); every panel draws one line
    per SLO (and window)."""
    from stack.slo.spec import load_spec

    names = [slo.name for slo in load_spec(ROOT / "alerts" / "slos.yaml").slos]
    sel = 'sloth_slo=~"$slo"'
    budget = f"slo:error_budget:ratio{{{sel}}}"
    return (
        _base(
            "AstraTrade / SLOs",
            "astra-slo",
            "Error budget, burn rates and SLIs of alerts/slos.yaml (rules: make alerts).",
        )
        .with_variable(
            db.CustomVariable("slo")
            .label("SLO")
            .values(",".join(names))
            .multi(True)
            .include_all(True)
            .all_value(".+")
            .current(VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
        .with_panel(
            _series(
                "Error budget remaining over the period",
                "percentunit",
                _query(f"slo:period_error_budget_remaining:ratio{{{sel}}}", "{{sloth_slo}}"),
                description="1 - (error ratio over the period / error budget); "
                "below 0 the SLO is broken for the period (30 days; drill: 12 hours).",
            )
        )
        .with_panel(
            _series(
                "Burn rate by window",
                "short",
                *(
                    _query(
                        f"slo:sli_error:ratio_rate{w}{{{sel}}}\n/ ignoring (sloth_window) {budget}",
                        "{{sloth_slo}} {{sloth_window}}",
                    )
                    for w in SLO_WINDOWS
                ),
                description="Error ratio over the window / error budget: 1 spends the budget "
                "in exactly the period; pages at 14.4 (1h and 5m) or 6 (6h and 30m), "
                "tickets at 3 (1d and 2h) or 1 (3d and 6h).",
            )
        )
        .with_panel(
            _series(
                "SLI error ratio",
                "percentunit",
                _query(f"slo:sli_error:ratio_rate5m{{{sel}}}", "{{sloth_slo}} 5m"),
                _query(f"slo:sli_error:ratio_rate1h{{{sel}}}", "{{sloth_slo}} 1h"),
                _query(budget, "{{sloth_slo}} budget"),
            )
        )
        .with_panel(
            _series(
                "SLI traffic (events per second, 1h)",
                "ops",
                _query(f"slo:sli_total:rate1h{{{sel}}}", "{{sloth_slo}}"),
                description="Alerts need at least 20 events in their long window.",
            )
        )
        .with_panel(
            _series(
                "Firing SLO alerts",
                "short",
                _query(
                    "sum by (alertname, severity, burnrate_tier) "
                    f'(ALERTS{{alertstate="firing",{sel}}})',
                    "{{alertname}} {{severity}} {{burnrate_tier}}",
                ),
            )
        )
    )


DASHBOARDS: dict[str, Callable[[], db.Dashboard]] = {
    "stack-overview": stack_overview,
    "gateway": gateway,
    "event-bus": event_bus,
    "service-detail": service_detail,
    "slos": slos,
}


def generated() -> dict[str, str]:
    """File name -> JSON text of every dashboard (stable: sorted keys, 2-space indent)."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    return {
        f"{name}.json": encoder.encode(build().build()) + "\n" for name, build in DASHBOARDS.items()
    }


def generate(out: Path = OUT, *, check: bool = False) -> int:
    """Write the dashboards, or with `check` report the ones that differ (exit 1)."""
    return write_or_check(generated(), out, check=check, how="astra dashboards generate")


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel."""
    found = []
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []) or []:
            if target.get("expr"):
                found.append((str(panel.get("title")), str(target["expr"])))
    return found


def load(out: Path = OUT) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
