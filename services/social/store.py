"""The feed in Redis: its keys, the effects that add an entry, and cursor-paginated reads.

    astra:social:entry:{entry_id}      string  the entry's JSON; TTL entry_ttl_seconds
    astra:social:feed:global           zset    entry_id -> occurred_at (ms), newest kept
    astra:social:feed:user:{user_id}   zset    the same, one user's entries
    astra:social:usernames             hash    username -> user_id (for `?user=<username>`)

Order is (occurred_at desc, entry_id desc): Redis orders equal scores by member,
and a cursor is the (score, id) of the last entry served, so a page continues
strictly after it. Entries added meanwhile never repeat one already served; an
entry newer than the first page shows up on the next first page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import redis.asyncio as aioredis

from backbone import keys
from backbone.bus.effects import Effects
from backbone.redis_pool import is_cluster
from services.social.cursor import Cursor
from services.social.schemas import FeedEntry

_PREFIX = f"{keys.PREFIX}:social"
GLOBAL_FEED = f"{_PREFIX}:feed:global"
USERNAMES = f"{_PREFIX}:usernames"
_SCAN_CHUNKS = 20  # one page reads at most this many chunks (expired entries are skipped)


def entry_key(entry_id: str) -> str:
    return f"{_PREFIX}:entry:{entry_id}"


def user_feed(user_id: str) -> str:
    return f"{_PREFIX}:feed:user:{user_id}"


def score_of(entry: FeedEntry) -> int:
    return int(entry.occurred_at.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Limits:
    global_size: int
    user_size: int
    ttl_seconds: int


class FeedStore:
    """Adds entries through a handler's effects; reads pages for the API.

    store = FeedStore(redis, Limits(10_000, 1_000, 30 * 86400))
    store.queue_entry(ctx.effects, entry)
    items, next_cursor = await store.page(None, cursor=None, limit=20)
    """

    def __init__(self, redis: aioredis.Redis, limits: Limits) -> None:
        self._redis = redis
        self._cluster = is_cluster(redis)
        self.limits = limits

    def queue_entry(self, effects: Effects, entry: FeedEntry) -> None:
        score, ttl = score_of(entry), self.limits.ttl_seconds
        mine = user_feed(entry.user_id)
        effects.call("SET", entry_key(entry.id), entry.model_dump_json(), "EX", ttl)
        effects.call("ZADD", GLOBAL_FEED, score, entry.id)
        # Ranks count from the oldest: keep the newest N, drop ranks 0 .. -(N + 1).
        effects.call("ZREMRANGEBYRANK", GLOBAL_FEED, 0, -(self.limits.global_size + 1))
        effects.call("ZADD", mine, score, entry.id)
        effects.call("ZREMRANGEBYRANK", mine, 0, -(self.limits.user_size + 1))
        effects.call("EXPIRE", mine, ttl)
        effects.call("HSET", USERNAMES, entry.username, entry.user_id)

    async def _bodies(self, entry_keys: list[str]) -> list[bytes | None]:
        """One MGET; on a Redis Cluster the entries live in many slots, so one GET per
        key, pipelined (the cluster client groups them by node)."""
        if not self._cluster:
            return cast("list[bytes | None]", await self._redis.mget(entry_keys))
        pipe = self._redis.pipeline(transaction=False)
        for key in entry_keys:
            pipe.get(key)
        return cast("list[bytes | None]", await pipe.execute())

    async def user_id_for(self, user: str) -> str:
        """`user` is a username, or else taken as a user id (usernames never contain '-')."""
        found = await self._redis.hget(USERNAMES, user)
        return _text(found) if found is not None else user

    async def page(
        self, user_id: str | None, *, cursor: Cursor | None, limit: int
    ) -> tuple[list[FeedEntry], Cursor | None]:
        """Up to `limit` entries strictly after `cursor`, newest first, and the next cursor."""
        key = GLOBAL_FEED if user_id is None else user_feed(user_id)
        top: float | str = "+inf" if cursor is None else cursor.score
        chunk = limit + 1
        found: list[tuple[Cursor, FeedEntry]] = []
        seen: set[str] = set()
        offset = 0
        last: Cursor | None = None  # the last position scanned
        for _ in range(_SCAN_CHUNKS):
            raw = await self._redis.zrevrangebyscore(
                key, top, "-inf", start=offset, num=chunk, withscores=True
            )
            members = cast("list[tuple[bytes, float]]", raw)
            offset += len(members)
            positions = [Cursor(int(score), _text(m)) for m, score in members]
            fresh = [
                p for p in positions if (cursor is None or p < cursor) and p.entry_id not in seen
            ]
            if fresh:
                bodies = await self._bodies([entry_key(p.entry_id) for p in fresh])
                for position, body in zip(fresh, bodies, strict=True):
                    seen.add(position.entry_id)
                    if body is not None:  # expired: its feed position outlived it
                        found.append((position, FeedEntry.model_validate_json(body)))
            if positions:
                last = positions[-1]
            if len(found) > limit or len(members) < chunk:
                break
        else:
            # Scan budget spent on a long run of expired entries: a short page, and the
            # next one resumes after the last position scanned.
            return [e for _, e in found], last
        if len(found) > limit:
            return [e for _, e in found[:limit]], found[limit - 1][0]
        return [e for _, e in found], None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
