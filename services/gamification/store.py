"""Gamification state in Redis: its keys, the reads, and the writes as buffered effects.

    astra:gamification:user:{user_id}               hash  xp, username
    astra:gamification:user:{user_id}:achievements  hash  code -> unlocked_at (ISO 8601)
    astra:gamification:leaderboard                  zset  user_id -> xp

Writes never go to Redis directly: `queue_award` appends them to a handler's
`Effects`, which the consumer applies atomically with the event's ack. Every
write is safe to apply on top of whatever a peer applied first: XP and the
leaderboard only ever grow by HINCRBY / ZINCRBY, an achievement keeps its first
unlock time (HSETNX).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

import redis.asyncio as aioredis

from backbone import keys
from backbone.bus.effects import Effects

_PREFIX = f"{keys.PREFIX}:gamification"
LEADERBOARD = f"{_PREFIX}:leaderboard"


# The braces are real: `{user_id}` is a hash tag, so a user's two hashes share a Redis
# Cluster slot and `profile()` may read both in one MULTI/EXEC there too.
def user_key(user_id: str) -> str:
    return f"{_PREFIX}:user:{{{user_id}}}"


def achievements_key(user_id: str) -> str:
    return f"{_PREFIX}:user:{{{user_id}}}:achievements"


@dataclass(frozen=True, slots=True)
class Profile:
    user_id: str
    username: str | None
    xp: int
    achievements: dict[str, datetime]  # code -> unlocked_at


@dataclass(frozen=True, slots=True)
class Ranked:
    user_id: str
    username: str
    xp: int


class GamificationStore:
    """Reads of the gamification state (handlers and routes) and the effects that change it.

    store = GamificationStore(parts.redis)
    profile = await store.profile("user-1")
    store.queue_award(ctx.effects, "user-1", "alice", 35, {"first_trade": executed_at})
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def profile(self, user_id: str) -> Profile:
        """The user's XP and achievements, read together in one MULTI/EXEC."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.hmget(user_key(user_id), ["xp", "username"])
        pipe.hgetall(achievements_key(user_id))
        (xp, username), achievements = await pipe.execute()
        return Profile(
            user_id=user_id,
            username=_text(username) if username is not None else None,
            xp=int(xp or 0),
            achievements={
                _text(code): datetime.fromisoformat(_text(at)) for code, at in achievements.items()
            },
        )

    async def leaderboard(self, limit: int) -> list[Ranked]:
        """The top `limit` users by XP; ties in XP are ordered by user id (Redis order)."""
        top = cast(
            "list[tuple[bytes, float]]",
            await self._redis.zrevrange(LEADERBOARD, 0, limit - 1, withscores=True),
        )
        if not top:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for user_id, _ in top:
            pipe.hget(user_key(_text(user_id)), "username")
        names = await pipe.execute()
        return [
            Ranked(_text(uid), _text(name) if name is not None else _text(uid), int(score))
            for (uid, score), name in zip(top, names, strict=True)
        ]

    @staticmethod
    def queue_award(
        effects: Effects,
        user_id: str,
        username: str,
        amount: int,
        unlocked: dict[str, datetime],
    ) -> None:
        effects.call("HINCRBY", user_key(user_id), "xp", amount)
        effects.call("HSET", user_key(user_id), "username", username)
        effects.call("ZINCRBY", LEADERBOARD, amount, user_id)
        for code, at in unlocked.items():
            effects.call("HSETNX", achievements_key(user_id), code, at.isoformat())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
