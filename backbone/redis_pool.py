"""The Redis client every long-running process uses."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError


def redis_client(
    url: str,
    *,
    connect_timeout: float,
    socket_timeout: float,
    wait_for_connection: float,
    max_connections: int = 256,
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
