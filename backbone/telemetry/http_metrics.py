"""RED metrics of an HTTP server, labelled by route template (never raw paths) and by the
route's SLO class (`read`, `write`, `auth`; `none` where the app declares none)."""

from __future__ import annotations

from functools import cache

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

# Seconds. Dense around the SLO thresholds (gateway p99 300 ms, services 250 ms)
# so a quantile near the target is interpolated within a narrow bucket.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "astra_http_server_requests_total",
            "HTTP requests served, by method, route template, status code and SLO class.",
            ["method", "route", "status", "slo_class"],
            registry=registry,
        )
        self.duration = Histogram(
            "astra_http_server_request_duration_seconds",
            "Time to the end of the response, by method, route template and SLO class.",
            ["method", "route", "slo_class"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "astra_http_server_requests_in_flight",
            "Requests being served now.",
            registry=registry,
        )


@cache
def http_metrics(registry: CollectorRegistry = REGISTRY) -> HttpMetrics:
    return HttpMetrics(registry)
