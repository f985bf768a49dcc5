"""Rate limits shared by every gateway replica: GCRA, one atomic Lua call per request.

GCRA (the generic cell rate algorithm) keeps one number per key, the theoretical
arrival time (TAT): a request is allowed when TAT + interval stays within
`burst` intervals of now. Redis server time is used, so replicas' clocks never
matter, and the key expires when it would be back to a full burst anyway.

If Redis cannot answer (within `redis_timeout`), each replica falls back to the
same algorithm in its own memory and stops asking Redis for `redis_retry_seconds`:
the limit then holds per replica (N replicas let through up to N times the rule),
which is degraded but never "no limit" and never "reject everything".
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from backbone import keys
from gateway.config import RateLimitRule, RateLimitSettings
from gateway.metrics import GatewayMetrics

log = logging.getLogger("gateway.ratelimit")

# KEYS: the key. ARGV: interval (ms per request), burst.
# Returns {allowed, remaining, retry_after_ms, reset_ms}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > tolerance then
  return {0, 0, math.ceil(new_tat - tolerance - now), math.ceil(tat - now)}
end
-- Fractional milliseconds: rounding the arrival time up would add >= 1 ms per
-- request and cap every subject near 1,000 req/s whatever the configured rate.
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now))
return {1, math.floor((tolerance - (new_tat - now)) / interval), 0, math.ceil(new_tat - now)}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the full burst is available again
    retry_after: int  # seconds; 0 when allowed

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_seconds).encode()),
        ]


class _MemoryGcra:
    """The same algorithm per replica, for when Redis is away; bounded LRU of keys."""

    def __init__(self, clock: Callable[[], float], max_keys: int = 100_000) -> None:
        self._clock = clock
        self._tats: OrderedDict[str, float] = OrderedDict()
        self._max_keys = max_keys

    def check(self, key: str, interval_ms: float, burst: int) -> tuple[int, int, int, int]:
        now = self._clock() * 1000
        tolerance = interval_ms * burst
        tat = max(self._tats.get(key, now), now)
        new_tat = tat + interval_ms
        if new_tat - now > tolerance:
            return 0, 0, math.ceil(new_tat - tolerance - now), math.ceil(tat - now)
        self._tats[key] = new_tat
        self._tats.move_to_end(key)
        while len(self._tats) > self._max_keys:
            self._tats.popitem(last=False)
        remaining = math.floor((tolerance - (new_tat - now)) / interval_ms)
        return 1, remaining, 0, math.ceil(new_tat - now)


class RateLimiter:
    """limiter = RateLimiter(redis, settings.rate_limit, metrics)

    decision = await limiter.check("auth", rule, "ip:203.0.113.9")

    The policy and its rule come from the request's `RouteSpec` (gateway/public_api.py),
    matched on the canonical path: `/login/` and `/login` are one policy, and there is
    no path matching here.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: RateLimitSettings,
        metrics: GatewayMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._s = settings
        self._metrics = metrics
        self._clock = clock
        self._script = redis.register_script(_GCRA)
        self._memory = _MemoryGcra(clock)
        self._redis_back_at = 0.0

    @property
    def in_memory(self) -> bool:
        """Limiting per replica (Redis failed within `redis_retry_seconds`)."""
        return self._clock() < self._redis_back_at

    async def check(self, policy: str, rule: RateLimitRule, subject: str) -> Decision:
        key = keys.rate_limit(policy, subject)
        interval_ms = 1000.0 / rule.rate
        backend = "redis"
        reply: tuple[int, int, int, int] | None = None
        if self._clock() >= self._redis_back_at:
            try:
                async with asyncio.timeout(self._s.redis_timeout):
                    raw = await self._script(keys=[key], args=[interval_ms, rule.burst])
                reply = (int(raw[0]), int(raw[1]), int(raw[2]), int(raw[3]))
            except (RedisError, OSError, TimeoutError) as e:
                self._redis_back_at = self._clock() + self._s.redis_retry_seconds
                log.warning("rate limit: Redis unavailable, limiting per replica: %r", e)
        if reply is None:
            backend = "memory"
            reply = self._memory.check(key, interval_ms, rule.burst)
        allowed, remaining, retry_ms, reset_ms = reply
        self._metrics.rate_limited.labels(
            policy, "allowed" if allowed else "limited", backend
        ).inc()
        return Decision(
            allowed=bool(allowed),
            limit=rule.burst,
            remaining=max(0, remaining),
            reset_seconds=max(0, math.ceil(reset_ms / 1000)),
            retry_after=0 if allowed else max(1, math.ceil(retry_ms / 1000)),
        )
