"""Writes that count only once replicas hold them: the commands, then `WAIT n`, on one
connection.

`WAIT` counts the replicas that acknowledged every write made *on the connection it
is sent on*. On one server (or a Sentinel-managed primary) that is one pipeline. On a
Redis Cluster the writes land on several primaries, and the cluster client's pipeline
would send a keyless `WAIT` to whichever node it likes, whose answer says nothing
about these writes. So the writes are grouped by the primary that owns their key's
slot, and each group goes down one connection to that primary, ending in its own
`WAIT`; the result is the fewest replicas any shard reached.

    writer = ReplicatedWriter(redis)
    done = await writer.write([("XADD", stream, "*", "envelope", body)], acks=1, timeout_ms=1000)
    done.replies      # one per command, in order; the exception where one failed
    done.replicated   # 0 when a shard's pipeline failed or its WAIT was not answered
    await writer.aclose()   # the per-primary connections (cluster only)

Every command's key is its second word (`XADD key ...`): the only commands sent this
way are the bus's XADDs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterDownError, RedisError

from backbone.redis_pool import is_cluster

log = logging.getLogger("backbone.replicated_write")

Command = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class WaitedWrites:
    replies: list[Any]  # per command; an Exception instance where that command failed
    replicated: int  # replicas that acknowledged, the fewest over the shards written


class ReplicatedWriter:
    """Sends writes followed by WAIT so that the WAIT covers exactly those writes."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._cluster = cast(RedisCluster, redis) if is_cluster(redis) else None
        self._primaries: dict[str, aioredis.Redis] = {}  # node name -> direct client

    async def write(self, commands: Sequence[Command], acks: int, timeout_ms: int) -> WaitedWrites:
        if self._cluster is None:
            replies, replicated = await self._on_one(self._redis, commands, acks, timeout_ms)
            return WaitedWrites(replies, replicated)
        await self._cluster.initialize()  # the slot map: loaded by a first command, else now
        by_node: dict[str, list[int]] = {}
        for i, command in enumerate(commands):
            node = self._cluster.get_node_from_key(command[1])
            if node is None:  # no primary serves this slot right now (mid-failover)
                raise ClusterDownError(f"no primary for the slot of {command[1]!r}")
            by_node.setdefault(node.name, []).append(i)
        shards = list(by_node.items())
        if len(shards) == 1:  # one primary (a single publish): no tasks to gather
            ((name, _),) = shards
            done = [await self._on_one(self._primary(name), commands, acks, timeout_ms)]
        else:
            done = await asyncio.gather(
                *(
                    self._on_one(self._primary(name), [commands[i] for i in idx], acks, timeout_ms)
                    for name, idx in shards
                )
            )
        merged: list[Any] = [None] * len(commands)
        replicated = acks
        stale = False
        for (_, idx), (shard_replies, shard_replicated) in zip(shards, done, strict=True):
            replicated = min(replicated, shard_replicated)
            for i, reply in zip(idx, shard_replies, strict=True):
                merged[i] = reply
                stale = stale or isinstance(reply, Exception)
        if stale:
            await self._refresh()
        return WaitedWrites(merged, replicated)

    async def _on_one(
        self, redis: aioredis.Redis, commands: Sequence[Command], acks: int, timeout_ms: int
    ) -> tuple[list[Any], int]:
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                pipe.execute_command("WAIT", acks, timeout_ms)
                replies = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as e:
            return [e] * len(commands), 0
        waited = replies[-1]
        return list(replies[:-1]), 0 if isinstance(waited, Exception) else int(waited)

    def _primary(self, name: str) -> aioredis.Redis:
        """A plain client on one primary, with the cluster client's credentials."""
        client = self._primaries.get(name)
        if client is None:
            assert self._cluster is not None
            node = self._cluster.get_node(node_name=name)
            assert node is not None
            kwargs = node.connection_kwargs
            client = aioredis.Redis(
                host=node.host,
                port=int(node.port),
                username=kwargs.get("username"),
                password=kwargs.get("password"),
                socket_timeout=kwargs.get("socket_timeout"),
                socket_connect_timeout=kwargs.get("socket_connect_timeout"),
            )
            self._primaries[name] = client
        return client

    async def _refresh(self) -> None:
        """A shard failed or answered MOVED: a failover or a reshard. Drop the direct
        clients and reload the slot map, so the next write finds the new primaries."""
        primaries, self._primaries = self._primaries, {}
        for client in primaries.values():
            await client.aclose()
        assert self._cluster is not None
        try:
            await self._cluster.nodes_manager.initialize()
        except (RedisError, OSError) as e:  # the cluster is still electing: next time
            log.warning("cluster slot map not reloaded: %s", e)

    async def aclose(self) -> None:
        primaries, self._primaries = self._primaries, {}
        for client in primaries.values():
            await client.aclose()
