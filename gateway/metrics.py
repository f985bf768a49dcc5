"""The gateway's own metrics (the RED metrics come from backbone.telemetry).

Label values are bounded: service names from the settings, fixed outcome words.
"""

from __future__ import annotations

from functools import cache

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from backbone.telemetry.http_metrics import LATENCY_BUCKETS

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.upstream_requests = Counter(
            "astra_gateway_upstream_requests_total",
            "Attempts sent upstream, by service and outcome "
            "(ok, http_5xx, connect_error, timeout).",
            ["service", "outcome"],
            registry=registry,
        )
        self.upstream_duration = Histogram(
            "astra_gateway_upstream_request_duration_seconds",
            "Time of one upstream attempt until its body was read, by service.",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "astra_gateway_retries_total",
            "Retry decisions, by service and result (retried, budget_exhausted).",
            ["service", "result"],
            registry=registry,
        )
        self.ejections = Counter(
            "astra_gateway_outlier_ejections_total",
            "Instances ejected after consecutive failures, by service.",
            ["service"],
            registry=registry,
        )
        self.breaker_state = Gauge(
            "astra_gateway_breaker_state",
            "Circuit breaker state by service: 0 closed, 1 half-open, 2 open.",
            ["service"],
            registry=registry,
        )
        self.breaker_transitions = Counter(
            "astra_gateway_breaker_transitions_total",
            "Circuit breaker state changes, by service and target state.",
            ["service", "to"],
            registry=registry,
        )
        self.breaker_rejections = Counter(
            "astra_gateway_breaker_rejections_total",
            "Requests refused because the service's breaker was open (or probes were busy).",
            ["service"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "astra_gateway_fallbacks_total",
            "Answers given while a service was unavailable or slow, by service and kind "
            "(stale_cache, stale_slow, unavailable).",
            ["service", "kind"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "astra_gateway_auth_failures_total",
            "Requests refused with 401, by reason (missing, invalid).",
            ["reason"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "astra_gateway_rate_limit_decisions_total",
            "Rate-limit decisions, by policy, decision (allowed, limited) and backend "
            "(redis, memory).",
            ["policy", "decision", "backend"],
            registry=registry,
        )
        self.audit_failures = Counter(
            "astra_gateway_audit_publish_failures_total",
            "Audit events that could not be published.",
            registry=registry,
        )
        self.audit_skipped = Counter(
            "astra_gateway_audit_skipped_total",
            "Audited actions the gateway refused itself, counted instead of written to "
            "the trail, by action and reason (unauthenticated, rate_limited, too_large, "
            "unavailable, client_gone, gateway_error).",
            ["action", "reason"],
            registry=registry,
        )


@cache
def gateway_metrics(registry: CollectorRegistry = REGISTRY) -> GatewayMetrics:
    """The gateway metrics of one collector registry (created once: prometheus refuses dupes)."""
    return GatewayMetrics(registry)
