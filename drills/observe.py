"""What a drill watches while it runs: its probes, its abort conditions, a per-second
timeline of the stack as Prometheus sees it, and which alerts fire when.

    watch = Watch(prometheus, gateway, token)
    value = await watch.probe(probe, window_seconds)     # float, or None (no data)
    sample = await watch.sample()                         # one timeline point
    firing = await watch.firing()                         # {"GatewayBreakerOpen", ...}

Everything is read from outside: Prometheus' HTTP API and real HTTP through the
gateway, never the drill's own counters.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

import httpx

from drills.spec import Abort, Probe

# The timeline's series: name -> PromQL over the last few seconds (drill profile: 1 s
# scrapes, so a 5 s rate is a handful of samples).
SERIES: dict[str, str] = {
    "requests_per_s": 'sum(rate(astra_http_server_requests_total{service="gateway"}[5s]))',
    "error_ratio_5xx": (
        'sum(rate(astra_http_server_requests_total{service="gateway",status=~"5.."}[5s]))'
        ' / clamp_min(sum(rate(astra_http_server_requests_total{service="gateway"}[5s])), 1e-9)'
    ),
    **{
        f"p95_{cls}_ms": (
            "1000 * histogram_quantile(0.95, sum by (le) (rate("
            f'astra_http_server_request_duration_seconds_bucket{{service="gateway",slo_class="{cls}"}}[5s])))'
        )
        for cls in ("read", "write", "auth")
    },
    "breaker_open": "max(astra_gateway_breaker_state == bool 2)",
    # max by: a group's producer reports it too (backbone/bus/monitor.py).
    "consumer_lag": (
        "sum(max by (stream, group) (astra_bus_group_lag))"
        " + sum(max by (stream, group) (astra_bus_pending_events))"
    ),
    "outbox_backlog": "sum(astra_outbox_backlog_events)",
}


def _window(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds))}s"


class Watch:
    def __init__(self, prometheus: str | None, gateway: str, token: str | None) -> None:
        self.prometheus = prometheus.rstrip("/") if prometheus else None
        self.gateway = gateway.rstrip("/")
        self.token = token
        self.http = httpx.AsyncClient(timeout=10.0)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        if self.prometheus is None:
            return []
        try:
            response = await self.http.get(
                f"{self.prometheus}/api/v1/query", params={"query": promql}, timeout=5.0
            )
            response.raise_for_status()
            result = response.json()["data"]["result"]
        except (httpx.HTTPError, KeyError, ValueError):
            return []
        found = []
        for item in result:
            value = float(item["value"][1])
            if not math.isnan(value):
                found.append((dict(item["metric"]), value))
        return found

    async def scalar(self, promql: str) -> float | None:
        series = await self.query(promql)
        return series[0][1] if series else None

    async def probe(self, probe: Probe, window_seconds: float) -> float | None:
        """The probe's value over the last `window_seconds` (PromQL) or now (HTTP)."""
        if probe.kind == "promql":
            assert probe.query is not None
            value = await self.scalar(probe.query.replace("{{window}}", _window(window_seconds)))
            return probe.missing if value is None else value
        return await self._http_probe(probe)

    async def _http_probe(self, probe: Probe) -> float:
        """The share of `samples` answers with an expected status (and header)."""
        good = 0
        for n in range(probe.samples):
            headers = {"X-Correlation-ID": f"drill-probe-{uuid.uuid4().hex[:12]}-{n}"}
            if probe.auth and self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            if probe.idempotency_key:
                headers["Idempotency-Key"] = uuid.uuid4().hex
            started = time.monotonic()
            try:
                response = await self.http.request(
                    probe.method,
                    f"{self.gateway}{probe.path}",
                    json=probe.json_body,
                    headers=headers,
                    timeout=probe.within_seconds or 15.0,
                )
            except httpx.HTTPError:
                continue  # no answer at all (or none in time): never an expected one
            late = probe.within_seconds is not None and (
                time.monotonic() - started > probe.within_seconds
            )
            if (
                not late
                and response.status_code in probe.expect
                and (probe.expect_header is None or probe.expect_header in response.headers)
            ):
                good += 1
        return good / probe.samples

    async def aborting(self, abort: Abort) -> float | None:
        """The abort condition's value now (over its `for_seconds`)."""
        return await self.scalar(abort.query.replace("{{window}}", _window(abort.for_seconds)))

    async def sample(self) -> dict[str, float | None]:
        values: dict[str, float | None] = {}
        for name, promql in SERIES.items():
            value = await self.scalar(promql)
            values[name] = None if value is None or math.isinf(value) else round(value, 4)
        return values

    async def firing(self) -> set[str]:
        """The alerts firing now, by name and also as `name/severity` (a burn-rate
        alert's page and ticket tiers share its name; `AlertRecord` keeps both)."""
        series = await self.query('ALERTS{alertstate="firing"}')
        names = {labels.get("alertname", "?") for labels, _ in series}
        tiers = {
            f"{labels.get('alertname', '?')}/{labels['severity']}"
            for labels, _ in series
            if labels.get("severity")
        }
        return names | tiers


class AlertRecord:
    """When each alert was firing, from one `firing()` set per second."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.periods: list[dict[str, Any]] = []
        self._open: dict[str, float] = {}

    def seen(self, names: set[str], at: float | None = None) -> None:
        at = time.time() if at is None else at
        for name in names:
            self.first.setdefault(name, at)
            self._open.setdefault(name, at)
        for name in list(self._open):
            if name not in names:
                self.periods.append({"name": name, "start": self._open.pop(name), "end": at})

    def close(self, at: float | None = None) -> list[dict[str, Any]]:
        """Every period by alert name (the `name/severity` ones are for `cleared_at`)."""
        at = time.time() if at is None else at
        for name, start in self._open.items():
            self.periods.append({"name": name, "start": start, "end": at})
        self._open.clear()
        by_name = [p for p in self.periods if "/" not in p["name"]]
        return sorted(by_name, key=lambda p: (p["start"], p["name"]))

    def firing_now(self) -> set[str]:
        """The alerts (and `name/severity` tiers) firing at the latest `seen()`."""
        return set(self._open)

    def fired_after(self, name: str, since: float) -> float | None:
        """Seconds from `since` to the first time `name` fired at or after it."""
        starts = [p["start"] for p in self.periods if p["name"] == name and p["end"] >= since]
        starts += [s for n, s in self._open.items() if n == name]
        later = [max(s, since) for s in starts]
        return round(min(later) - since, 1) if later else None

    def cleared_at(self, name: str) -> float | None:
        """When `name` last stopped firing, or None if it still fires (or never did)."""
        if name in self._open:
            return None
        ends = [p["end"] for p in self.periods if p["name"] == name]
        return max(ends) if ends else None
