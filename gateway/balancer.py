"""Choosing an instance: least outstanding requests by the power of two choices.

    candidates (ready, not ejected, not already tried) ── pick 2 at random ──> fewer in flight

Scanning every instance for the least loaded one makes every gateway replica
herd onto the same instance between refreshes; comparing two random ones gives
nearly the same balance (Mitzenmacher, "The Power of Two Choices") in O(1) and
spreads replicas naturally. Outstanding counts are local to this replica.

Passive outlier ejection: `eject_after_failures` consecutive connection errors or
5xx answers take an instance out of rotation for `ejection_seconds`, doubled per
repeat ejection (capped); one success resets its count. If every candidate is
ejected the balancer ignores ejection (panic mode, as Envoy does) rather than
refuse traffic a recovered instance could serve.

Latency outliers are ejected the same way. An instance that answers, but slowly
(a saturated host, a slow link: chaos drill 4 puts 1 s on one of two), never
fails, and least-outstanding alone still sends it about one request in two
whenever both are idle, so a share of requests waits the full second and the
latency SLO is lost. Each instance keeps an EWMA of its successful attempts'
latency; once it has `latency_min_samples` and exceeds both the absolute
`latency_floor_seconds` (fast services are never ejected for being 2 ms slower)
and `latency_factor` x the median EWMA of its non-ejected peers (a service slow
everywhere is not an outlier: ejection cannot help, the breaker and timeouts
must), it is ejected with the failure back-off, unless more than
`max_ejection_share` of the service's instances would then be out (Envoy's
max_ejection_percent; at least one may always go). Ejection, not a latency-
weighted choice (peak EWMA), because it is bounded, visible
(`astra_gateway_outlier_ejections_total`, the log says why) and switchable as one
defence, and because the choice stays the cheap, herd-free two-choices one.

When an ejection ends the instance is on probation: one request at a time until
an answer comes back. A failure or a latency outlier answer ejects it again at
once (with the doubled back-off); a normal one restarts its statistics from that
sample. So a still-slow or still-failing instance costs one request per ejection
period, and a recovered one is not ejected again for its old average.

`outlier_ejection=False` (`ASTRA_UPSTREAM__OUTLIER_EJECTION=false`, the drills'
`--without-defence`) ejects nothing at all, for failures or latency: the choice
is then plain least-outstanding over the instances discovery lists.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from backbone.registry import InstanceInfo
from gateway.config import UpstreamSettings

Clock = Callable[[], float]


@dataclass(slots=True)
class _Host:
    outstanding: int = 0
    failures: int = 0  # consecutive
    ejections: int = 0  # consecutive ejections, for the back-off
    ejected_until: float = 0.0
    latency: float = 0.0  # EWMA of successful attempts, seconds
    samples: int = 0  # in `latency`


Verdict = Literal["failures", "latency"]


def latency_outlier(
    ewma: float, samples: int, peers: Sequence[float], settings: UpstreamSettings
) -> bool:
    """Whether an instance with this latency EWMA is an outlier among `peers` (the
    EWMAs of its non-ejected peers that have enough samples themselves)."""
    if samples < settings.latency_min_samples or not peers:
        return False
    if ewma <= settings.latency_floor_seconds:
        return False
    return ewma > settings.latency_factor * statistics.median(peers)


class Balancer:
    """Per-service instance choice and health book-keeping.

    balancer = Balancer("trading", settings.upstream)
    instance = balancer.pick(discovery.instances("trading"), exclude={"trading-1"})
    balancer.started(instance.instance_id)
    ... balancer.finished(instance.instance_id, ok=True, seconds=0.012)   # ok=None: no verdict
    """

    def __init__(
        self,
        service: str,
        settings: UpstreamSettings,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        on_eject: Callable[[str, str, float, Verdict], None] | None = None,
    ) -> None:
        self.service = service
        self._settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_eject = on_eject
        self._hosts: dict[str, _Host] = {}
        self._members: tuple[str, ...] = ()  # the instances of the latest pick

    def _host(self, instance_id: str) -> _Host:
        host = self._hosts.get(instance_id)
        if host is None:
            host = self._hosts[instance_id] = _Host()
        return host

    def is_ejected(self, instance_id: str) -> bool:
        host = self._hosts.get(instance_id)
        return host is not None and host.ejected_until > self._clock()

    def _on_probation(self, host: _Host) -> bool:
        """Back from an ejection, no answer yet: one request at a time."""
        return host.ejections > 0 and host.ejected_until <= self._clock() and host.outstanding > 0

    def _usable(self, instance_id: str) -> bool:
        host = self._hosts.get(instance_id)
        if host is None or not self._settings.outlier_ejection:
            return True
        return host.ejected_until <= self._clock() and not self._on_probation(host)

    def pick(
        self, instances: Sequence[InstanceInfo], exclude: Collection[str] = ()
    ) -> InstanceInfo | None:
        self._members = tuple(i.instance_id for i in instances)
        candidates = [i for i in instances if i.instance_id not in exclude]
        if not candidates:
            return None
        healthy = [i for i in candidates if self._usable(i.instance_id)]
        pool = healthy or candidates  # panic mode: never refuse for ejection alone
        if len(pool) == 1:
            return pool[0]
        a, b = self._rng.sample(pool, 2)
        load_a = self._host(a.instance_id).outstanding
        load_b = self._host(b.instance_id).outstanding
        return a if load_a <= load_b else b

    def started(self, instance_id: str) -> None:
        self._host(instance_id).outstanding += 1

    def finished(self, instance_id: str, ok: bool | None, seconds: float | None = None) -> None:
        """An attempt ended: `ok` its verdict (None: none), `seconds` how long it took."""
        host = self._host(instance_id)
        host.outstanding = max(0, host.outstanding - 1)
        if ok is None or not self._settings.outlier_ejection:
            return
        now = self._clock()
        if not ok:
            host.failures += 1
            # Back from an ejection (probation) a failure ejects again at once, as a
            # latency outlier's answer does: a still-broken instance costs one request
            # per ejection period, not `eject_after_failures` of them.
            back = host.ejections > 0 and host.ejected_until <= now
            if back or host.failures >= self._settings.eject_after_failures:
                self._eject(instance_id, host, "failures")
            return
        host.failures = 0
        if host.ejected_until > now:
            return  # a late answer from before the ejection: it decides nothing
        back = host.ejections > 0  # first answer after an ejection: the probation verdict
        if seconds is None:
            if back:
                host.ejections = 0
            return
        if back and host.samples:
            # Judged on this answer alone, against the peers as they are now.
            if self._is_outlier(instance_id, seconds, max(host.samples, self._min())):
                self._eject(instance_id, host, "latency")
                return
            host.ejections = 0
            host.latency, host.samples = seconds, 1  # recovered: a fresh start
            return
        host.ejections = 0
        alpha = 1.0 if host.samples == 0 else self._settings.latency_ewma_alpha
        host.latency += alpha * (seconds - host.latency)
        host.samples += 1
        if self._is_outlier(instance_id, host.latency, host.samples):
            self._eject(instance_id, host, "latency")

    def _min(self) -> int:
        return self._settings.latency_min_samples

    def _is_outlier(self, instance_id: str, ewma: float, samples: int) -> bool:
        peers = [
            h.latency
            for i in self._members
            if i != instance_id
            and (h := self._hosts.get(i)) is not None
            and h.samples >= self._min()
            and not self.is_ejected(i)
        ]
        if not latency_outlier(ewma, samples, peers, self._settings):
            return False
        out = sum(1 for i in self._members if i != instance_id and self.is_ejected(i)) + 1
        # Never more than the share out at once, but one may always go (Envoy's rule).
        return out == 1 or out <= self._settings.max_ejection_share * len(self._members)

    def _eject(self, instance_id: str, host: _Host, why: Verdict) -> None:
        host.failures = 0
        seconds = min(
            self._settings.ejection_seconds * 2**host.ejections,
            self._settings.max_ejection_seconds,
        )
        host.ejections += 1
        host.ejected_until = self._clock() + seconds
        if self._on_eject is not None:
            self._on_eject(self.service, instance_id, seconds, why)

    def forget_others(self, live: Collection[str]) -> None:
        """Drop book-keeping of instances that left the registry."""
        for instance_id in [i for i in self._hosts if i not in live]:
            if self._hosts[instance_id].outstanding == 0:
                del self._hosts[instance_id]

    def snapshot(self, instance_id: str) -> dict[str, Any]:
        host = self._hosts.get(instance_id) or _Host()
        return {
            "outstanding": host.outstanding,
            "ejected": host.ejected_until > self._clock(),
            "latency_ms": round(host.latency * 1000, 1) if host.samples else None,
        }
