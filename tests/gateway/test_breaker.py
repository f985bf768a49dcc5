"""The circuit breaker with a fake clock, and once through a real gateway."""

from __future__ import annotations

from gateway.breaker import CircuitBreaker, State
from gateway.config import BreakerSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


SETTINGS = BreakerSettings(
    failure_rate=0.5, window_seconds=10, min_requests=4, cooldown_seconds=5, half_open_probes=2
)


def _fail(breaker: CircuitBreaker, n: int, ok: bool = False) -> None:
    for _ in range(n):
        ticket = breaker.admit()
        assert ticket is not None
        breaker.record(ticket, ok=ok)


def test_opens_on_failure_rate_only_after_min_requests() -> None:
    clock = FakeClock()
    moves: list[tuple[State, State]] = []
    breaker = CircuitBreaker(
        "s", SETTINGS, clock=clock, on_transition=lambda _n, a, b: moves.append((a, b))
    )
    _fail(breaker, 3)
    assert breaker.state == "closed"  # 3 < min_requests
    _fail(breaker, 1)
    assert breaker.state == "open"
    assert breaker.admit() is None
    assert breaker.retry_after() == 5
    assert moves == [("closed", "open")]


def test_old_failures_leave_the_window() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("s", SETTINGS, clock=clock)
    _fail(breaker, 3)
    clock.now += 11
    _fail(breaker, 3, ok=True)
    _fail(breaker, 1)
    assert breaker.state == "closed"  # 1 failure in 4


def test_half_open_admits_bounded_probes_then_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("s", SETTINGS, clock=clock)
    _fail(breaker, 4)
    clock.now += 4.9
    assert breaker.admit() is None
    clock.now += 0.2
    assert breaker.state == "half_open"
    first, second = breaker.admit(), breaker.admit()
    assert first is not None
    assert second is not None
    assert breaker.admit() is None  # probes are bounded
    breaker.record(first, ok=True)
    assert breaker.state == "half_open"
    breaker.record(second, ok=True)
    assert breaker.state == "closed"


def test_a_failed_probe_reopens_and_stale_verdicts_are_ignored() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("s", SETTINGS, clock=clock)
    early = breaker.admit()
    assert early is not None
    _fail(breaker, 4)
    clock.now += 5
    probe = breaker.admit()
    assert probe is not None
    breaker.record(early, ok=True)  # admitted while closed: no say in half-open
    assert breaker.state == "half_open"
    breaker.record(probe, ok=False)
    assert breaker.state == "open"
    clock.now += 5
    released = breaker.admit()
    assert released is not None
    breaker.record(released, ok=None)  # cancelled: frees the slot, no verdict
    assert breaker.admit() is not None
