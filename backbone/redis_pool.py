"""The Redis client every long-running process uses."""

from __future__ import annotations

import redis.asyncio as aioredis


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
    `from_pool` makes `aclose()` close the pool too."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait_for_connection,
        socket_connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        health_check_interval=10,
    )
    return aioredis.Redis.from_pool(pool)
