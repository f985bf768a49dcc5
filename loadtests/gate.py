"""The SLO gate: `alerts/slos.yaml` judges a load run twice, and the exit code says how.

    verdict = judge(spec, client_view(locust_out), server_view(spec, prom, start, end))
    print(verdict.table()); sys.exit(0 if verdict.passed else 1)

Client side, from Locust's statistics grouped by each request's SLO class (its route's
class in gateway/public_api.py): availability = 1 - (5xx + no answer) / requests,
429s excluded from errors and reported apart; latency = the share of requests at or
under the class threshold, from Locust's response-time histogram. Server side, each
SLO's `error_query` / `total_query` from Prometheus with `{{.window}}` = the run's
length, at the run's end (freshness SLOs are only seen from there). An SLO missed in
either view fails the gate; views that differ by more than `tolerance` percentage
points are flagged: one of them is measuring something else (instrumentation wrong).
Without Prometheus the server view is "unavailable" and only the client view judges.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from loadtests.outcomes import CLIENT_ERROR, THROTTLED
from loadtests.routes import slo_class_of
from stack.slo.spec import SloDefinition, SloFile

DEFAULT_TOLERANCE = 2.0  # percentage points between the client and the server view


@dataclass
class ClassStats:
    """What the client saw of one SLO class."""

    slo_class: str
    requests: int = 0
    errors: int = 0  # 5xx and no answer: what the availability SLO counts
    throttled: int = 0  # 429: reported, not an error
    client_errors: int = 0  # other 4xx
    histogram: dict[int, int] = field(default_factory=dict)  # rounded ms -> requests

    def share_within(self, seconds: float) -> float | None:
        total = sum(self.histogram.values())
        if not total:
            return None
        limit = seconds * 1000
        return sum(n for ms, n in self.histogram.items() if ms <= limit) / total

    def percentile(self, q: float) -> float | None:
        total = sum(self.histogram.values())
        if not total:
            return None
        rank, seen = math.ceil(q * total), 0
        for ms in sorted(self.histogram):
            seen += self.histogram[ms]
            if seen >= rank:
                return float(ms)
        return float(max(self.histogram))

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "throttled_429": self.throttled,
            "client_errors_4xx": self.client_errors,
            "error_ratio": self.errors / self.requests if self.requests else None,
            "p50_ms": self.percentile(0.5),
            "p95_ms": self.percentile(0.95),
            "p99_ms": self.percentile(0.99),
        }


def client_view(locust_out: dict[str, Any]) -> dict[str, ClassStats]:
    """Locust's per-route statistics (written by locustfile.py), summed per SLO class."""
    classes: dict[str, ClassStats] = {}

    def of(method: str, name: str) -> ClassStats:
        cls = slo_class_of(method, name) or "other"
        return classes.setdefault(cls, ClassStats(cls))

    for entry in locust_out.get("entries", []):
        stats = of(entry["method"], entry["name"])
        stats.requests += int(entry["num_requests"])
        for ms, n in entry["response_times"].items():
            stats.histogram[int(float(ms))] = stats.histogram.get(int(float(ms)), 0) + int(n)
    for error in locust_out.get("errors", []):
        stats = of(error["method"], error["name"])
        message, n = str(error["error"]), int(error["occurrences"])
        if THROTTLED in message:
            stats.throttled += n
        elif CLIENT_ERROR in message:
            stats.client_errors += n
        else:  # SERVER_ERROR, NO_ANSWER, or anything unforeseen: an error all the same
            stats.errors += n
    return classes


@dataclass
class Reading:
    """One view of one SLO: the good ratio and how many events it is over."""

    sli: float | None = None
    events: float | None = None
    status: str = "no data"  # met | missed | no data | unavailable

    def judge(self, target: float) -> Reading:
        if self.sli is not None:
            self.status = "met" if self.sli >= target else "missed"
        return self


def _client_reading(slo: SloDefinition, classes: dict[str, ClassStats]) -> Reading:
    if slo.kind == "freshness":
        return Reading(status="server only")
    stats = classes.get(slo.slo_class or "")
    if stats is None or not stats.requests:
        return Reading()
    if slo.kind == "availability":
        sli = 1 - stats.errors / stats.requests
    else:
        share = stats.share_within(slo.threshold_seconds or 0)
        if share is None:
            return Reading()
        sli = share
    return Reading(sli, stats.requests).judge(slo.target_ratio)


class Prometheus:
    """Instant queries through Prometheus' HTTP API (`/api/v1/query`)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def reachable(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=self.timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def vector(self, query: str, at: float) -> list[tuple[dict[str, str], float]]:
        """The query's series at `at`: (labels, value), NaN values left out."""
        response = httpx.get(
            f"{self.url}/api/v1/query",
            params={"query": query, "time": f"{at:.3f}"},
            timeout=self.timeout,
        )
        response.raise_for_status()
        series = [(r["metric"], float(r["value"][1])) for r in response.json()["data"]["result"]]
        return [(labels, value) for labels, value in series if not math.isnan(value)]

    def scalar(self, query: str, at: float) -> float | None:
        """The query's one value at `at`, or None when it selects nothing."""
        series = self.vector(query, at)
        return series[0][1] if series else None


def fired_alerts(prometheus: Prometheus | None, start: float, end: float) -> list[str]:
    """Alert names Prometheus had firing at any point of [start, end] (`ALERTS`)."""
    if prometheus is None or not prometheus.reachable():
        return []
    window = f"{max(1, math.ceil(end - start))}s"
    query = f'max by (alertname) (max_over_time(ALERTS{{alertstate="firing"}}[{window}]))'
    try:
        response = httpx.get(
            f"{prometheus.url}/api/v1/query",
            params={"query": query, "time": f"{end:.3f}"},
            timeout=prometheus.timeout,
        )
        response.raise_for_status()
        result = response.json()["data"]["result"]
    except (httpx.HTTPError, KeyError, ValueError):
        return []
    return sorted(str(r["metric"].get("alertname", "?")) for r in result)


def server_view(
    spec: SloFile, prometheus: Prometheus | None, start: float, end: float
) -> dict[str, Reading] | None:
    """Each SLO over [start, end] as Prometheus saw it; None when it cannot be asked."""
    if prometheus is None or not prometheus.reachable():
        return None
    window = f"{max(1, math.ceil(end - start))}s"
    readings: dict[str, Reading] = {}
    for slo in spec.slos:
        events = slo.sli.events
        try:
            total = prometheus.scalar(events.total_query.replace("{{.window}}", window), end)
            bad = prometheus.scalar(events.error_query.replace("{{.window}}", window), end)
        except (httpx.HTTPError, KeyError, ValueError):
            readings[slo.name] = Reading(status="unavailable")
            continue
        if not total:
            readings[slo.name] = Reading()
            continue
        # No series of errors at all (no 5xx was ever counted) is zero errors.
        sli = min(1.0, max(0.0, 1 - (bad or 0.0) / total))
        readings[slo.name] = Reading(sli, total * (end - start)).judge(slo.target_ratio)
    return readings


def server_quantiles(
    prometheus: Prometheus | None, start: float, end: float, q: float = 0.99
) -> dict[str, dict[str, float]]:
    """The q-quantile over [start, end] as Prometheus' histograms estimate it (linear
    within a bucket, so "within the bucket" precision), in milliseconds: gateway latency
    per SLO class, and event age at handling per consumer group (freshness)."""
    if prometheus is None or not prometheus.reachable():
        return {}
    window = f"{max(1, math.ceil(end - start))}s"
    queries = {
        "latency_ms": (
            "slo_class",
            f"histogram_quantile({q}, sum by (le, slo_class) (rate("
            f'astra_http_server_request_duration_seconds_bucket{{service="gateway"}}[{window}])))',
        ),
        "event_age_ms": (
            "group",
            f"histogram_quantile({q}, sum by (le, group) "
            f"(rate(astra_bus_event_age_seconds_bucket[{window}])))",
        ),
    }
    found: dict[str, dict[str, float]] = {}
    for name, (label, query) in queries.items():
        try:
            series = prometheus.vector(query, end)
        except (httpx.HTTPError, KeyError, ValueError):
            continue
        found[name] = {
            labels.get(label, "?"): round(value * 1000, 1)
            for labels, value in series
            if not math.isinf(value)
        }
    return found


@dataclass
class Row:
    slo: str
    kind: str
    slo_class: str | None
    objective: float  # percent
    client: Reading
    server: Reading
    disagree: bool

    @property
    def missed(self) -> bool:
        return "missed" in (self.client.status, self.server.status)


@dataclass
class Verdict:
    rows: list[Row]
    server_available: bool
    tolerance: float  # percentage points
    classes: dict[str, ClassStats]

    @property
    def passed(self) -> bool:
        return not any(row.missed for row in self.rows)

    @property
    def disagreements(self) -> list[str]:
        return [row.slo for row in self.rows if row.disagree]

    def table(self) -> str:
        head = f"{'SLO':<38} {'objective':>9}  {'client':<26} {'server':<26} verdict"
        lines = [head, "-" * len(head)]
        for row in self.rows:
            verdict = "MISSED" if row.missed else "ok"
            if row.disagree:
                verdict += " (views disagree)"
            lines.append(
                f"{row.slo:<38} {row.objective:>8g}%  {_cell(row.client, row.objective):<26} "
                f"{_cell(row.server, row.objective):<26} {verdict}"
            )
        lines.append("")
        if not self.server_available:
            lines.append(
                "server view: unavailable (Prometheus not reachable); judged client side only"
            )
        if self.disagreements:
            lines.append(
                f"views disagree by more than {self.tolerance:g} pp on "
                f"{', '.join(self.disagreements)}: the instrumentation is measuring something else"
            )
        for name, stats in sorted(self.classes.items()):
            s = stats.summary()
            lines.append(
                f"{name:<6} requests {s['requests']:>6}  errors {s['errors']:>4}  "
                f"429 {s['throttled_429']:>4}  4xx {s['client_errors_4xx']:>4}  "
                f"p50 {_ms(s['p50_ms'])}  p95 {_ms(s['p95_ms'])}  p99 {_ms(s['p99_ms'])}"
            )
        lines.append("")
        lines.append("PASS: every objective met" if self.passed else "FAIL: objectives missed")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "server_view": "available" if self.server_available else "unavailable",
            "tolerance_pp": self.tolerance,
            "disagreements": self.disagreements,
            "slos": [
                {**asdict(row), "missed": row.missed, "margin_pp": _margins(row)}
                for row in self.rows
            ],
            "classes": {name: stats.summary() for name, stats in self.classes.items()},
        }


def _margins(row: Row) -> dict[str, float | None]:
    """SLI minus objective, in percentage points, per view (negative: missed by that)."""
    return {
        view: None if r.sli is None else round(r.sli * 100 - row.objective, 4)
        for view, r in (("client", row.client), ("server", row.server))
    }


def _cell(reading: Reading, objective: float) -> str:
    if reading.sli is None:
        return reading.status
    pct = reading.sli * 100
    if reading.status == "missed":
        return f"{pct:.3f}% missed by {objective - pct:.3f}pp"
    return f"{pct:.3f}% met"


def _ms(value: float | None) -> str:
    return "    -" if value is None else f"{value:>5.0f}ms"


def judge(
    spec: SloFile,
    classes: dict[str, ClassStats],
    server: dict[str, Reading] | None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Verdict:
    rows = []
    for slo in spec.slos:
        client = _client_reading(slo, classes)
        seen = (server or {}).get(slo.name) or Reading(
            status="no data" if server is not None else "unavailable"
        )
        disagree = (
            client.sli is not None
            and seen.sli is not None
            and abs(client.sli - seen.sli) * 100 > tolerance
        )
        rows.append(Row(slo.name, slo.kind, slo.slo_class, slo.objective, client, seen, disagree))
    return Verdict(rows, server is not None, tolerance, classes)
