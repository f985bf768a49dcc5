"""Prometheus metrics of the fault proxy, counted as plain ints on the data path.

The hot path (`Link.feed`) must not take a lock per chunk, so links add to the
integer counters of a `ProxyStats`, and a custom collector reads them at scrape time:

    metrics = FaultProxyMetrics(CollectorRegistry())
    stats = metrics.stats_for("redis")      # handed to Proxy, which hands it to Link
    stats.received[Direction.UPSTREAM] += 512
    generate_latest(metrics.registry)       # astra_faultproxy_received_bytes_total{...} 512.0
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chaos.faultproxy.direction import Direction


class ProxyStats:
    """Counters of one proxy; lists are indexed by `Direction`."""

    __slots__ = (
        "active_connections",
        "connections",
        "received",
        "sent",
        "toxics",
        "upstream_errors",
    )

    def __init__(self) -> None:
        self.received = [0, 0]  # bytes read from the source side, per direction
        self.sent = [0, 0]  # bytes written to the destination side, per direction
        self.connections = 0  # accepted client connections, ever
        self.active_connections = 0
        self.upstream_errors = 0  # client connections closed because the upstream refused
        self.toxics: dict[tuple[str, str], int] = {}  # (type, stream) -> toxics configured

    def toxic_added(self, toxic_type: str, stream: Direction) -> None:
        key = (toxic_type, str(stream))
        self.toxics[key] = self.toxics.get(key, 0) + 1

    def toxic_removed(self, toxic_type: str, stream: Direction) -> None:
        key = (toxic_type, str(stream))
        left = self.toxics.get(key, 0) - 1
        if left > 0:
            self.toxics[key] = left
        else:
            self.toxics.pop(key, None)


class FaultProxyMetrics(Collector):
    """Registers itself in `registry` (a fresh one per server; tests pass their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._stats: dict[str, ProxyStats] = {}
        self.registry.register(self)

    def stats_for(self, proxy: str) -> ProxyStats:
        """The counters of `proxy`; a proxy recreated under the same name keeps counting."""
        stats = self._stats.get(proxy)
        if stats is None:
            stats = self._stats[proxy] = ProxyStats()
        return stats

    def forget(self, proxy: str) -> None:
        """Drop a deleted proxy's series, so label values stay bounded by live proxies."""
        self._stats.pop(proxy, None)

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        received = CounterMetricFamily(
            "astra_faultproxy_received_bytes",
            "Bytes read from the source side of proxied connections.",
            labels=["proxy", "direction"],
        )
        sent = CounterMetricFamily(
            "astra_faultproxy_sent_bytes",
            "Bytes written to the destination side of proxied connections.",
            labels=["proxy", "direction"],
        )
        accepted = CounterMetricFamily(
            "astra_faultproxy_connections",
            "Client connections accepted.",
            labels=["proxy"],
        )
        refused = CounterMetricFamily(
            "astra_faultproxy_upstream_errors",
            "Client connections dropped because the upstream could not be reached.",
            labels=["proxy"],
        )
        active = GaugeMetricFamily(
            "astra_faultproxy_active_connections",
            "Proxied connections currently open.",
            labels=["proxy"],
        )
        toxics = GaugeMetricFamily(
            "astra_faultproxy_toxics_active",
            "Toxics configured on a proxy, by type and stream.",
            labels=["proxy", "type", "stream"],
        )
        for name, stats in sorted(self._stats.items()):
            for direction in Direction:
                labels = [name, str(direction)]
                received.add_metric(labels, stats.received[direction])
                sent.add_metric(labels, stats.sent[direction])
            accepted.add_metric([name], stats.connections)
            refused.add_metric([name], stats.upstream_errors)
            active.add_metric([name], stats.active_connections)
            for (toxic_type, stream), count in sorted(stats.toxics.items()):
                toxics.add_metric([name, toxic_type, stream], count)
        yield from (received, sent, accepted, refused, active, toxics)
