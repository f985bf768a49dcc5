"""A retry budget: retries stay under `ratio` of requests, plus a small floor.

Retries multiply load exactly when a service is weakest; a budget bounds the
extra load to ~10% however many clients retry (the Finagle/gRPC idea), while the
floor lets a quiet gateway still retry its rare failures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RetryBudget:
    """Counts requests and retries over a sliding window of `window_seconds`.

    budget.record_request()
    if budget.try_retry(): ...retry...
    """

    _BUCKETS = 10

    def __init__(
        self,
        *,
        ratio: float,
        floor: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ratio = ratio
        self._floor = floor
        self._width = window_seconds / self._BUCKETS
        self._clock = clock
        self._requests = [0] * self._BUCKETS
        self._retries = [0] * self._BUCKETS
        self._epoch = [0] * self._BUCKETS  # which slot-period each bucket counts

    def _slot(self) -> int:
        period = math.floor(self._clock() / self._width)
        index = period % self._BUCKETS
        if self._epoch[index] != period:
            self._epoch[index] = period
            self._requests[index] = 0
            self._retries[index] = 0
        return index

    def _live(self, counts: list[int]) -> int:
        period = math.floor(self._clock() / self._width)
        return sum(
            c for c, e in zip(counts, self._epoch, strict=True) if period - e < self._BUCKETS
        )

    def record_request(self) -> None:
        self._requests[self._slot()] += 1

    def try_retry(self) -> bool:
        """Spend one retry if the budget allows it."""
        index = self._slot()
        if self._live(self._retries) >= self._ratio * self._live(self._requests) + self._floor:
            return False
        self._retries[index] += 1
        return True
