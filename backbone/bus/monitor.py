"""Samples stream length, group lag, pending count, oldest-pending age and DLQ length.

Sampling (not per-event bookkeeping) keeps the consume path free of extra
round trips; the interval is `BusSettings.metrics_sample_interval_ms`.

A producer samples *every* group on the streams it publishes, not only its own: a
consumer that is paused, dead or cut off from Redis cannot report its own lag or its
oldest pending entry (a drill showed the alerts on them deaf in exactly the cases they
exist for), so the process on the other end of the stream reports them from outside.
The same (stream, group) series then comes from two processes; rules and panels take
`max by (stream, group)`. When sampling fails, the group gauges are cleared rather
than left at their last value: a frozen "lag 0" would outvote the true view in a max.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

import redis.asyncio as aioredis
from prometheus_client import REGISTRY, CollectorRegistry
from redis.exceptions import RedisError, ResponseError

from backbone import keys
from backbone._text import text
from backbone.bus._outage import Outage
from backbone.bus.metrics import bus_metrics

log = logging.getLogger("backbone.bus.monitor")


class StreamMonitor:
    def __init__(
        self,
        redis: aioredis.Redis,
        watched: Iterable[tuple[str, str]],
        *,
        interval_ms: int = 5_000,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        """`watched`: (stream, group) pairs; group "" (a stream we publish) means every
        group on that stream."""
        self._redis = redis
        self._watched = sorted(set(watched))
        self._interval = interval_ms / 1000
        self._metrics = bus_metrics(registry)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._outage = Outage(log, "stream monitor")

    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._loop(), name="stream-monitor")

    async def aclose(self) -> None:
        # Stop by flag, not by cancel(): on Python 3.11 redis-py can swallow a
        # cancellation that lands as a command completes, and the task runs on.
        if self._task is not None:
            self._stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=10)
            self._task = None

    async def _loop(self) -> None:
        while not self._stop.is_set():
            delay = self._interval
            try:
                await self.sample()
                self._outage.recovered()
            except (RedisError, OSError, EOFError) as e:
                # Unknown, not stale: another process's view (or none) stands meanwhile.
                self._forget_groups()
                delay = min(self._interval, self._outage.failed(e))
            except Exception as e:  # an odd reply must not end sampling for good
                log.exception("stream sampling failed")
                delay = max(self._interval, self._outage.failed(e))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)

    async def sample(self) -> None:
        m = self._metrics
        for stream in sorted({s for s, _ in self._watched}):
            m.stream_length.labels(stream).set(await self._redis.xlen(stream))
            m.dlq_length.labels(stream).set(await self._redis.xlen(keys.dead_letter_stream(stream)))
            try:
                groups = await self._redis.xinfo_groups(stream)
            except ResponseError:  # stream not created yet
                continue
            by_name = {text(g["name"]): g for g in groups}
            wanted = {g for s, g in self._watched if s == stream}
            for group in sorted(by_name if "" in wanted else wanted & by_name.keys()):
                info = by_name[group]
                m.pending.labels(stream, group).set(int(info.get("pending", 0)))
                lag = info.get("lag")
                if lag is not None:  # None when Redis cannot tell (after deletions)
                    m.group_lag.labels(stream, group).set(int(lag))
                oldest = await self._redis.xpending_range(stream, group, "-", "+", 1)
                age = int(oldest[0]["time_since_delivered"]) / 1000 if oldest else 0.0
                m.oldest_pending_age.labels(stream, group).set(age)

    def _forget_groups(self) -> None:
        m = self._metrics
        for gauge in (m.group_lag, m.pending, m.oldest_pending_age):
            gauge.clear()
