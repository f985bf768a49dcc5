"""A circuit breaker per service.

    closed ──(failure rate >= threshold over the window, >= min requests)──> open
    open ──(cool-down elapsed)──> half-open ──(probes all succeed)──> closed
                                      └──────(any probe fails)──────> open

Half-open admits at most `half_open_probes` requests at once; the rest are
refused as if open. Each admission carries the breaker's generation, so a
verdict from a request admitted before a transition never counts after it.

`BreakerSettings.enabled=False` (`ASTRA_BREAKER__ENABLED=false`, a chaos drill's
`--without-defence`) keeps it closed for good: every request is admitted and
no verdict is counted, so the state gauge reads closed however the service fails.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Literal

from gateway.config import BreakerSettings

log = logging.getLogger("gateway.breaker")

State = Literal["closed", "open", "half_open"]
Clock = Callable[[], float]
_BUCKETS = 10


class CircuitBreaker:
    """breaker = CircuitBreaker("trading", settings.breaker, on_transition=callback)

    ticket = breaker.admit()          # None: refused (open, or probes busy)
    ...
    breaker.record(ticket, ok=True)   # ok=None releases the slot without a verdict
    """

    def __init__(
        self,
        name: str,
        settings: BreakerSettings,
        *,
        clock: Clock = time.monotonic,
        on_transition: Callable[[str, State, State], None] | None = None,
    ) -> None:
        self.name = name
        self._s = settings
        self._clock = clock
        self._on_transition = on_transition
        self._state: State = "closed"
        self._generation = 0
        self._opened_at = 0.0
        self._width = settings.window_seconds / _BUCKETS
        self._totals = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS
        self._periods = [-1] * _BUCKETS
        self._probes_in_flight = 0
        self._probe_successes = 0

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name} {self.state}>"

    @property
    def state(self) -> State:
        if self._state == "open" and self._clock() - self._opened_at >= self._s.cooldown_seconds:
            self._transition("half_open")
        return self._state

    def retry_after(self) -> int:
        """Whole seconds until the breaker lets a probe through (at least 1)."""
        if self._state != "open":
            return 1
        left = self._s.cooldown_seconds - (self._clock() - self._opened_at)
        return max(1, math.ceil(left))

    def admit(self) -> int | None:
        if not self._s.enabled:
            return self._generation
        state = self.state
        if state == "closed":
            return self._generation
        if state == "half_open" and self._probes_in_flight < self._s.half_open_probes:
            self._probes_in_flight += 1
            return self._generation
        return None

    def record(self, ticket: int, ok: bool | None) -> None:
        if ticket != self._generation or not self._s.enabled:
            return  # admitted under an earlier state: its verdict is about the past
        if self._state == "half_open":
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            if ok is None:
                return
            if not ok:
                self._transition("open")
                return
            self._probe_successes += 1
            if self._probe_successes >= self._s.half_open_probes:
                self._transition("closed")
            return
        if self._state != "closed" or ok is None:
            return
        index = self._bucket()
        self._totals[index] += 1
        if not ok:
            self._failures[index] += 1
            total, failures = self._window()
            if total >= self._s.min_requests and failures / total >= self._s.failure_rate:
                self._transition("open")

    def _bucket(self) -> int:
        period = math.floor(self._clock() / self._width)
        index = period % _BUCKETS
        if self._periods[index] != period:
            self._periods[index] = period
            self._totals[index] = 0
            self._failures[index] = 0
        return index

    def _window(self) -> tuple[int, int]:
        period = math.floor(self._clock() / self._width)
        live = [i for i, p in enumerate(self._periods) if period - p < _BUCKETS]
        return sum(self._totals[i] for i in live), sum(self._failures[i] for i in live)

    def _transition(self, to: State) -> None:
        before, self._state = self._state, to
        self._generation += 1
        self._probes_in_flight = 0
        self._probe_successes = 0
        if to == "open":
            self._opened_at = self._clock()
        if to == "closed":
            self._periods = [-1] * _BUCKETS
        level = logging.WARNING if to == "open" else logging.INFO
        log.log(level, "breaker %s: %s -> %s", self.name, before, to, extra={"service": self.name})
        if self._on_transition is not None:
            self._on_transition(self.name, before, to)
