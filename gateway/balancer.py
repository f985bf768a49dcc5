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
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from backbone.registry import InstanceInfo
from gateway.config import UpstreamSettings

Clock = Callable[[], float]


@dataclass(slots=True)
class _Host:
    outstanding: int = 0
    failures: int = 0  # consecutive
    ejections: int = 0  # consecutive ejections, for the back-off
    ejected_until: float = 0.0


class Balancer:
    """Per-service instance choice and health book-keeping.

    balancer = Balancer("trading", settings.upstream)
    instance = balancer.pick(discovery.instances("trading"), exclude={"trading-1"})
    balancer.started(instance.instance_id)
    ... balancer.finished(instance.instance_id, ok=True)   # ok=None: no verdict
    """

    def __init__(
        self,
        service: str,
        settings: UpstreamSettings,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        on_eject: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.service = service
        self._settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_eject = on_eject
        self._hosts: dict[str, _Host] = {}

    def _host(self, instance_id: str) -> _Host:
        host = self._hosts.get(instance_id)
        if host is None:
            host = self._hosts[instance_id] = _Host()
        return host

    def is_ejected(self, instance_id: str) -> bool:
        host = self._hosts.get(instance_id)
        return host is not None and host.ejected_until > self._clock()

    def pick(
        self, instances: Sequence[InstanceInfo], exclude: Collection[str] = ()
    ) -> InstanceInfo | None:
        candidates = [i for i in instances if i.instance_id not in exclude]
        if not candidates:
            return None
        healthy = [i for i in candidates if not self.is_ejected(i.instance_id)]
        pool = healthy or candidates  # panic mode: never refuse for ejection alone
        if len(pool) == 1:
            return pool[0]
        a, b = self._rng.sample(pool, 2)
        load_a = self._host(a.instance_id).outstanding
        load_b = self._host(b.instance_id).outstanding
        return a if load_a <= load_b else b

    def started(self, instance_id: str) -> None:
        self._host(instance_id).outstanding += 1

    def finished(self, instance_id: str, ok: bool | None) -> None:
        host = self._host(instance_id)
        host.outstanding = max(0, host.outstanding - 1)
        if ok is None:
            return
        if ok:
            host.failures = 0
            if host.ejected_until <= self._clock():
                host.ejections = 0
            return
        host.failures += 1
        if host.failures >= self._settings.eject_after_failures:
            host.failures = 0
            seconds = min(
                self._settings.ejection_seconds * 2**host.ejections,
                self._settings.max_ejection_seconds,
            )
            host.ejections += 1
            host.ejected_until = self._clock() + seconds
            if self._on_eject is not None:
                self._on_eject(self.service, instance_id, seconds)

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
        }
