"""Shared fixtures: real redis-server processes on free ports, never the machine's 6379."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from stack.redis_server import RedisServer
from tests.support.tokens import TokenIssuer


def _require_redis_binary() -> None:
    if shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists():
        pytest.skip("redis-server is not installed (make test installs it: scripts/require.sh)")


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start as many private redis-servers as a test needs; all are stopped after it."""
    _require_redis_binary()
    servers: list[RedisServer] = []

    def make(**kwargs: object) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.kill()


@pytest.fixture
def redis_server(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_factory()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def issuer() -> AsyncIterator[TokenIssuer]:
    """EdDSA tokens and a real JWKS endpoint on a free port (the users service's role)."""
    async with TokenIssuer() as issuer:
        yield issuer


# --- PostgreSQL, when there is one --------------------------------------------

POSTGRES_URL_ENV = "ASTRA_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
_probed: dict[str, str | None] = {}  # url -> None when reachable, else why not


async def _probe(url: str) -> str | None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with asyncio.timeout(3), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    finally:
        await engine.dispose()
    return None


@pytest.fixture
def postgres_url() -> str:
    """The test PostgreSQL URL; skips (visibly, with the reason) when none answers."""
    url = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    if url not in _probed:
        # Its own thread and loop: this fixture may be requested from a running loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            _probed[url] = pool.submit(asyncio.run, _probe(url)).result()
    reason = _probed[url]
    if reason is not None:
        shown = make_url(url).render_as_string(hide_password=True)
        pytest.skip(f"PostgreSQL not reachable at {shown} ({reason}); set {POSTGRES_URL_ENV}")
    return url
