"""The Redis client every long-running process uses: one server by URL, the primary
a set of Sentinels names (`ASTRA_REDIS_SENTINELS`), followed across failovers, or a
Redis Cluster found from the URL's node (`ASTRA_REDIS_CLUSTER`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError


def parse_sentinels(text: str) -> list[tuple[str, int]]:
    """`ASTRA_REDIS_SENTINELS`: "host:port,host:port" (empty: no Sentinel)."""
    found = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"ASTRA_REDIS_SENTINELS: {part!r} is not host:port")
        found.append((host.strip("[]"), int(port)))
    return found


def redis_client(
    url: str,
    *,
    connect_timeout: float,
    socket_timeout: float,
    wait_for_connection: float,
    max_connections: int = 256,
    sentinels: Sequence[tuple[str, int]] = (),
    sentinel_master: str = "astra",
    cluster: bool = False,
) -> aioredis.Redis:
    """A client over a *blocking* pool: under a burst, callers wait up to
    `wait_for_connection` seconds for a free connection instead of failing with
    MaxConnectionsError (redis-py's default pool holds 100 and then raises).
    `from_pool` makes `aclose()` close the pool too.

    One immediate retry, on a fresh socket, for a connection error only: after a
    Redis restart every pooled connection is dead, and without it the first
    command on each would fail although Redis answers (a false second outage in
    every loop's log, a 5xx for a request). Timeouts are not retried: against a
    slow Redis that would double the wait. The retried command may have reached
    Redis before the connection broke; every writer here is idempotent or
    counted at-least-once (bus consumers dedupe, the outbox relay re-publishes)."""
    if cluster:
        return _cluster_client(
            url,
            connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
            max_connections=max_connections,
        )
    if sentinels:
        return _sentinel_client(
            url,
            sentinels,
            sentinel_master,
            connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
            max_connections=max_connections,
        )
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait_for_connection,
        socket_connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        health_check_interval=10,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return aioredis.Redis.from_pool(pool)


def _sentinel_client(
    url: str,
    sentinels: Sequence[tuple[str, int]],
    master: str,
    *,
    connect_timeout: float,
    socket_timeout: float,
    max_connections: int,
) -> aioredis.Redis:
    """The primary Sentinel names `master`, found again after a failover: a connection
    that breaks (the old primary died) or answers READONLY (it came back demoted) is
    dropped and the next one asks the sentinels. `url` gives the credentials and the
    database, its host is ignored; the sentinels themselves are asked without a
    password (protect them by network, as Sentinel's own docs advise, or set
    `requirepass` on both sides)."""
    parts = urlsplit(url)
    db = int(parts.path.lstrip("/") or 0)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(sentinels),
        sentinel_kwargs={"socket_connect_timeout": connect_timeout, "socket_timeout": 1.0},
        socket_connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        db=db,
        health_check_interval=10,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        max_connections=max_connections,
    )
    client: aioredis.Redis = sentinel.master_for(master)
    return client


def is_cluster(redis: object) -> bool:
    """Whether this client talks to a Redis Cluster (its commands route by key slot)."""
    return isinstance(redis, RedisCluster)


def _cluster_client(
    url: str, *, connect_timeout: float, socket_timeout: float, max_connections: int
) -> aioredis.Redis:
    """A Redis Cluster client seeded by the URL's node: it learns the slot map from
    it, follows MOVED/ASK, and after a failover finds the promoted replica (a broken
    connection or CLUSTERDOWN makes it reload the map, with backoff, up to its retry
    budget). Every command the kernel sends names keys of one slot (`backbone.keys`),
    or goes slot by slot where one atomic step had to become two (see bus/consumer).

    Typed as `Redis`: the cluster client answers the same commands, and the few that
    differ (pipelines with WAIT, multi-slot scripts) check `is_cluster()` first."""
    client = RedisCluster.from_url(
        url,
        socket_connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        max_connections=max_connections,
        health_check_interval=10,
        require_full_coverage=True,
    )
    return cast(aioredis.Redis, client)
