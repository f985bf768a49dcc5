"""Prometheus metrics of the service registry, one set per collector registry.

Label values are bounded: `service` comes from signed records or from the
configured service list, `status` and `reason` are literals.
"""

from __future__ import annotations

from functools import cache

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge


class RegistryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.cache_stale = Gauge(
            "astra_registry_cache_stale",
            "1 while discovery serves its last known view because refreshing failed.",
            registry=registry,
        )
        self.instances = Gauge(
            "astra_registry_instances",
            "Live, correctly signed instances in the discovery cache, by service and status.",
            ["service", "status"],
            registry=registry,
        )
        self.refresh_failures = Counter(
            "astra_registry_refresh_failures_total",
            "Discovery cache refreshes that failed (Redis error or timeout).",
            registry=registry,
        )
        self.heartbeat_failures = Counter(
            "astra_registry_heartbeat_failures_total",
            "Heartbeats Redis did not accept, by service.",
            ["service"],
            registry=registry,
        )
        self.rejected_records = Counter(
            "astra_registry_rejected_records_total",
            "Records discovery ignored, once per refresh that saw them, by reason "
            "(signature: missing or wrong HMAC; invalid: unreadable or under the wrong key; "
            "host_not_allowed: URL not http(s) to an allowed host).",
            ["reason"],
            registry=registry,
        )


@cache
def registry_metrics(registry: CollectorRegistry = REGISTRY) -> RegistryMetrics:
    """The registry metrics of one collector registry (created once: prometheus refuses dupes)."""
    return RegistryMetrics(registry)
