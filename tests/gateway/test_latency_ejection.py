"""Latency-based outlier ejection: the pure rule, the balancer, and a real slow upstream."""

from __future__ import annotations

import random
from collections import Counter

import aiohttp
import pytest

from backbone.registry import InstanceInfo
from gateway.balancer import Balancer, Verdict, latency_outlier
from gateway.config import UpstreamSettings
from tests.gateway.conftest import GatewayAt, UpstreamFactory
from tests.support.poll import poll_until

SETTINGS = UpstreamSettings(
    latency_floor_seconds=0.2, latency_factor=3, latency_min_samples=3, ejection_seconds=5
)
FAST, SLOW = 0.01, 1.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _instances(*names: str) -> list[InstanceInfo]:
    return [
        InstanceInfo(service="s", instance_id=n, url=f"http://{n}", version="1", status="ready")
        for n in names
    ]


def test_the_rule_needs_samples_a_floor_and_a_factor_over_the_peers() -> None:
    assert latency_outlier(1.0, 3, [0.01, 0.02], SETTINGS)
    assert not latency_outlier(1.0, 2, [0.01], SETTINGS)  # too few samples
    assert not latency_outlier(0.15, 10, [0.01], SETTINGS)  # under the floor
    assert not latency_outlier(1.0, 10, [0.5, 0.4], SETTINGS)  # not 3x the median
    assert not latency_outlier(1.0, 10, [], SETTINGS)  # no peer to compare with


class Harness:
    def __init__(self, settings: UpstreamSettings = SETTINGS, names: str = "ab") -> None:
        self.clock = FakeClock()
        self.ejected: list[tuple[str, float, Verdict]] = []
        self.balancer = Balancer(
            "s",
            settings,
            clock=self.clock,
            rng=random.Random(7),
            on_eject=lambda _s, i, secs, why: self.ejected.append((i, secs, why)),
        )
        self.instances = _instances(*names)

    def answer(self, instance_id: str, seconds: float, times: int = 1) -> None:
        for _ in range(times):
            self.balancer.pick(self.instances)  # the balancer learns the members from picks
            self.balancer.started(instance_id)
            self.balancer.finished(instance_id, ok=True, seconds=seconds)

    def picks(self, n: int = 50) -> Counter[str]:
        return Counter(self.balancer.pick(self.instances).instance_id for _ in range(n))  # type: ignore[union-attr]


def test_a_slow_instance_is_ejected_after_min_samples_and_probed_one_at_a_time() -> None:
    h = Harness()
    h.answer("a", FAST, times=5)
    h.answer("b", SLOW, times=2)
    assert h.ejected == []
    h.answer("b", SLOW)
    assert h.ejected == [("b", 5, "latency")]
    assert h.picks() == {"a": 50}

    h.clock.now += 5.1  # the ejection ends: probation, one request at a time
    h.balancer.started("b")
    assert h.picks() == {"a": 50}  # b has its probe in flight
    h.balancer.finished("b", ok=True, seconds=SLOW)
    assert h.ejected[-1] == ("b", 10, "latency")  # still slow: out again at once, doubled

    h.clock.now += 10.1
    h.answer("b", FAST)  # recovered: the probe answers fast
    assert h.ejected[-1][1] == 10  # not ejected again
    assert set(h.picks(100)) == {"a", "b"}
    h.answer("b", FAST, times=2)  # and its old average does not count against it
    assert len(h.ejected) == 2


def test_a_service_slow_everywhere_has_no_outlier() -> None:
    h = Harness()
    h.answer("a", SLOW, times=5)
    h.answer("b", SLOW, times=5)
    assert h.ejected == []


def test_never_more_than_the_share_is_ejected() -> None:
    h = Harness(SETTINGS.model_copy(update={"max_ejection_share": 0.5}), names="abcd")
    h.answer("a", FAST, times=5)
    h.answer("b", FAST, times=5)
    h.answer("c", SLOW, times=3)
    h.answer("d", SLOW, times=3)
    assert [i for i, _, _ in h.ejected] == ["c", "d"]  # 2 of 4: at the share
    h2 = Harness(SETTINGS.model_copy(update={"max_ejection_share": 0.3}), names="abcd")
    h2.answer("a", FAST, times=5)
    h2.answer("b", FAST, times=5)
    h2.answer("c", SLOW, times=3)
    h2.answer("d", SLOW, times=3)
    assert [i for i, _, _ in h2.ejected] == ["c"]  # one may always go, the second may not


def test_switched_off_nothing_is_ejected_for_latency() -> None:
    h = Harness(SETTINGS.model_copy(update={"outlier_ejection": False}))
    h.answer("a", FAST, times=5)
    h.answer("b", SLOW, times=10)
    assert h.ejected == []
    assert set(h.picks()) == {"a", "b"}


# --- through a real gateway: two real upstreams, one slow ----------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("enabled", [True, False])
async def test_traffic_moves_off_a_slow_instance(
    enabled: bool,
    redis_url: str,
    upstreams: UpstreamFactory,
    gateway_at: GatewayAt,
    http: aiohttp.ClientSession,
) -> None:
    fast = await upstreams("trading", "trading-1")
    slow = await upstreams("trading", "trading-2")
    upstream = {"outlier_ejection": enabled, "ejection_seconds": 30}
    # Ejection alone: no stale-if-slow answer (it would end each client request at
    # 0.2 s and let the balancer's least-outstanding choice do the moving instead).
    fallback = {"stale_after_seconds": 0}
    async with gateway_at(redis_url, upstream=upstream, fallback=fallback) as base:
        url = f"{base}/api/v1/trading/markets"

        # Each instance needs `latency_min_samples` answers before it counts as a
        # peer: with fewer, the fast one is no yardstick yet, and the slow one's
        # answers could not be judged against it (the CI flake this replaced).
        async def both_warm() -> bool:
            async with http.get(url) as response:
                await response.read()
            return all(sum("markets" in r["path"] for r in u.seen) >= 3 for u in (fast, slow))

        await poll_until(both_warm, "both instances routed three times")
        slow.mode, slow.delay = "slow", 0.4  # answers, but 0.4 s late (> the 0.2 s floor)
        before = len(slow.seen)
        for _ in range(30):
            async with http.get(url) as response:
                assert response.status == 200
                await response.read()
        to_slow = len(slow.seen) - before
        async with http.get(f"{base}/metrics") as response:
            metrics = await response.text()
    ejections = 'astra_gateway_outlier_ejections_total{service="trading"} 1.0'
    if enabled:
        # Sequential requests: exactly `latency_min_samples` (3) slow ones, then ejected.
        assert to_slow <= 3, to_slow
        assert ejections in metrics
    else:
        assert to_slow >= 6, to_slow  # about half of 30, for as long as it stays slow
        assert ejections not in metrics
