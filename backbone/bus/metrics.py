"""Prometheus metrics of the event bus, one set per collector registry.

Counters are labelled by stream and group (both bounded: declared in code);
gauges are sampled from XINFO/XPENDING by `backbone.bus.monitor`.
"""

from __future__ import annotations

from functools import cache

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

# Handler latency buckets (seconds) straddle the 5 ms publish->handler target.
HANDLER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Event age buckets (seconds): the freshness SLOs' thresholds (alerts/slos.yaml, 2 s) must
# be one of these boundaries; `stack.slo.rules` refuses a spec whose threshold is not.
FRESHNESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class BusMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "astra_bus_published_events_total",
            "Events Redis accepted, by stream and path (direct or outbox).",
            ["stream", "path"],
            registry=registry,
        )
        self.publish_failures = Counter(
            "astra_bus_publish_failures_total",
            "Publish attempts Redis did not accept.",
            ["stream", "path"],
            registry=registry,
        )
        self.unreplicated = Counter(
            "astra_bus_unreplicated_publishes_total",
            "Events Redis accepted but fewer replicas than ASTRA_BUS__REPLICA_ACKS held in "
            "time (the outbox publishes them again).",
            ["stream", "path"],
            registry=registry,
        )
        self.consumed = Counter(
            "astra_bus_consumed_events_total",
            "Events a group's handler completed and acked.",
            ["stream", "group"],
            registry=registry,
        )
        self.duplicates = Counter(
            "astra_bus_duplicate_events_total",
            "Redelivered events skipped because their effect was already applied.",
            ["stream", "group"],
            registry=registry,
        )
        self.failed = Counter(
            "astra_bus_handler_failures_total",
            "Handler invocations that raised.",
            ["stream", "group"],
            registry=registry,
        )
        self.retried = Counter(
            "astra_bus_retried_events_total",
            "Entries reclaimed (XAUTOCLAIM) for another delivery attempt.",
            ["stream", "group"],
            registry=registry,
        )
        self.own_pending_reread = Counter(
            "astra_bus_own_pending_reread_events_total",
            "Entries a consumer held pending and read again itself "
            "(after a restart or a lost link).",
            ["stream", "group"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "astra_bus_dead_lettered_events_total",
            "Entries moved to the dead-letter stream, by reason "
            "(poison, unknown_producer, failures, effect_error).",
            ["stream", "group", "reason"],
            registry=registry,
        )
        self.trimmed_before_ack = Counter(
            "astra_bus_trimmed_before_ack_total",
            "Pending entries that retention trimmed before the group acked them (work lost).",
            ["stream", "group"],
            registry=registry,
        )
        self.handler_duration = Histogram(
            "astra_bus_handler_duration_seconds",
            "Handler run time per event.",
            ["stream", "group"],
            buckets=HANDLER_BUCKETS,
            registry=registry,
        )
        self.event_age = Histogram(
            "astra_bus_event_age_seconds",
            "Time from the envelope's occurred_at to the group's handler completing, per event.",
            ["stream", "group"],
            buckets=FRESHNESS_BUCKETS,
            registry=registry,
        )
        self.stream_length = Gauge(
            "astra_bus_stream_length",
            "XLEN of the stream (sampled).",
            ["stream"],
            registry=registry,
        )
        self.group_lag = Gauge(
            "astra_bus_group_lag",
            "Entries not yet delivered to the group (XINFO GROUPS lag, sampled).",
            ["stream", "group"],
            registry=registry,
        )
        self.pending = Gauge(
            "astra_bus_pending_events",
            "Delivered but not yet acked entries (sampled).",
            ["stream", "group"],
            registry=registry,
        )
        self.oldest_pending_age = Gauge(
            "astra_bus_oldest_pending_age_seconds",
            "Idle time of the oldest pending entry (sampled).",
            ["stream", "group"],
            registry=registry,
        )
        self.dlq_length = Gauge(
            "astra_bus_dead_letter_length",
            "XLEN of the stream's dead-letter stream (sampled).",
            ["stream"],
            registry=registry,
        )
        self.outbox_backlog = Gauge(
            "astra_outbox_backlog_events",
            "Outbox rows not yet accepted by Redis.",
            registry=registry,
        )
        self.outbox_oldest_age = Gauge(
            "astra_outbox_oldest_unsent_age_seconds",
            "Age of the oldest outbox row not yet accepted by Redis.",
            registry=registry,
        )


@cache
def bus_metrics(registry: CollectorRegistry = REGISTRY) -> BusMetrics:
    """The bus metrics of one registry (created once: prometheus refuses duplicates)."""
    return BusMetrics(registry)
