"""Load balancing, outlier ejection and budgeted retries."""

from __future__ import annotations

import random
from collections import Counter

import aiohttp
import pytest

from backbone.registry import InstanceInfo
from gateway.balancer import Balancer
from gateway.config import UpstreamSettings
from gateway.retry import RetryBudget
from tests.gateway.conftest import GatewayAt, UpstreamFactory
from tests.support.poll import poll_until


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


def test_two_choices_prefer_the_less_loaded_instance() -> None:
    balancer = Balancer("s", UpstreamSettings(), rng=random.Random(1))
    a, b = _instances("a", "b")
    for _ in range(5):
        balancer.started("a")
    assert {balancer.pick([a, b]).instance_id for _ in range(20)} == {"b"}  # type: ignore[union-attr]
    assert balancer.pick([a, b], exclude={"b"}) == a


def test_ejection_backs_off_and_panics_when_all_are_ejected() -> None:
    clock = FakeClock()
    ejected: list[tuple[str, float]] = []
    balancer = Balancer(
        "s",
        UpstreamSettings(eject_after_failures=2, ejection_seconds=1, max_ejection_seconds=3),
        clock=clock,
        on_eject=lambda _s, i, secs, _why: ejected.append((i, secs)),
    )
    a, b = _instances("a", "b")
    for _ in range(2):
        balancer.started("a")
        balancer.finished("a", ok=False)
    assert ejected == [("a", 1)]
    assert all(balancer.pick([a, b]) == b for _ in range(10))
    clock.now += 1.1
    for _ in range(2):
        balancer.finished("a", ok=False)
    assert ejected[-1] == ("a", 2)  # doubled
    for _ in range(2):
        balancer.finished("b", ok=False)
    assert balancer.pick([a, b]) is not None  # everyone ejected: panic mode still routes


def test_one_failure_on_probation_ejects_again_and_one_success_forgives() -> None:
    clock = FakeClock()
    ejected: list[tuple[str, float]] = []
    balancer = Balancer(
        "s",
        UpstreamSettings(eject_after_failures=3, ejection_seconds=1, max_ejection_seconds=8),
        clock=clock,
        on_eject=lambda _s, i, secs, _why: ejected.append((i, secs)),
    )
    for _ in range(3):
        balancer.finished("a", ok=False)
    assert ejected == [("a", 1)]
    clock.now += 1.1  # back, on probation: its first answer is the verdict
    balancer.finished("a", ok=False)
    assert ejected == [("a", 1), ("a", 2)]  # one failure, not three
    clock.now += 2.1
    balancer.finished("a", ok=True)  # recovered: the count and the back-off start over
    for _ in range(2):
        balancer.finished("a", ok=False)
    assert len(ejected) == 2
    balancer.finished("a", ok=False)
    assert ejected[-1] == ("a", 1)


def test_retry_budget_is_a_ratio_plus_floor_over_a_window() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.1, floor=2, window_seconds=10, clock=clock)
    for _ in range(100):
        budget.record_request()
    assert sum(budget.try_retry() for _ in range(50)) == 12  # 10% of 100 + 2
    clock.now += 11  # the window moved on
    assert budget.try_retry()


@pytest.mark.integration
async def test_spreads_across_instances_and_ejects_a_dead_one(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    one = await upstreams("trading", "trading-1")
    two = await upstreams("trading", "trading-2")
    async with gateway_at(redis_url) as base:
        url = f"{base}/api/v1/trading/markets"

        async def both_seen() -> bool:
            async with http.get(url) as response:
                await response.read()
            return bool(one.seen and two.seen)

        await poll_until(both_seen, "both instances routed")
        counts: Counter[str] = Counter()
        for _ in range(40):
            async with http.get(url) as response:
                counts[(await response.json())["instance"]] += 1
        assert counts["trading-1"] >= 8, counts
        assert counts["trading-2"] >= 8, counts

        await two.kill()  # still registered: only passive health checks can tell
        statuses = []
        for _ in range(30):
            async with http.get(url) as response:
                statuses.append(response.status)
                await response.read()
        assert statuses == [200] * 30  # retried on the live instance, then ejected
        async with http.get(f"{base}/metrics") as response:
            text = await response.text()
        assert 'astra_gateway_outlier_ejections_total{service="trading"} 1.0' in text
        assert 'astra_gateway_retries_total{result="retried",service="trading"}' in text
