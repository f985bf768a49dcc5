"""One background loop's view of a Redis outage: bounded back-off, logged once.

    outage = Outage(log, "consumer read loop", stream=..., group=...)
    while running:
        try:
            ...                      # talk to Redis
            outage.recovered()       # logs "reconnected after 4.2s (9 retries)" once
        except (RedisError, OSError) as e:
            await sleep(outage.failed(e))   # logs "lost Redis" on the first failure only

A loop that logged every retry would write thousands of identical lines during a
minute-long outage and bury the one that says when it began.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis.backoff import EqualJitterBackoff

# Retry delays, seconds: from 50 ms (a blip) up to 2 s (an outage), with jitter so a
# fleet of loops does not hit a Redis that just came back all in the same instant.
BACKOFF_BASE = 0.05
BACKOFF_CAP = 2.0


class Outage:
    __slots__ = ("_backoff", "_fields", "_log", "_what", "error", "retries", "since")

    def __init__(self, logger: logging.Logger, what: str, **fields: Any) -> None:
        self._log = logger
        self._what = what
        self._fields = fields
        self._backoff = EqualJitterBackoff(cap=BACKOFF_CAP, base=BACKOFF_BASE)
        self.since: float | None = None  # monotonic start of the current outage
        self.retries = 0
        self.error: str | None = None

    @property
    def active(self) -> bool:
        return self.since is not None

    def failed(self, error: BaseException) -> float:
        """Note a failed attempt; the seconds to wait before the next one."""
        self.error = f"{type(error).__name__}: {error}"[:500]
        self.retries += 1
        if self.since is None:
            self.since = time.monotonic()
            self._log.warning(
                "%s lost Redis; retrying with back-off up to %.0fs",
                self._what,
                BACKOFF_CAP,
                extra={**self._fields, "error": self.error},
            )
        else:
            self._log.debug("%s: Redis still unreachable", self._what, extra=self._fields)
        return float(self._backoff.compute(self.retries))

    def recovered(self) -> None:
        if self.since is None:
            return
        self._log.info(
            "%s reconnected to Redis after %.1fs (%d retries)",
            self._what,
            time.monotonic() - self.since,
            self.retries,
            extra=self._fields,
        )
        self.since = None
        self.retries = 0
        self.error = None
