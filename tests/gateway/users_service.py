"""The real users service behind a test gateway: registered in the same Redis, so the
gateway routes to it and fetches its JWKS through the registry, as in the stack.

async with users_service(redis_url, tmp_path) as users_url: ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from services.users.app import create_app
from services.users.config import Settings
from stack.netutil import free_port
from tests.gateway.conftest import FAST_BUS, FAST_REGISTRY
from tests.support.asgi_server import serve_app

PASSWORD = "correct horse battery"


@asynccontextmanager
async def users_service(redis_url: str, tmp_path: Path) -> AsyncIterator[str]:
    settings = Settings(
        env="test",
        instance_id="users-1",
        port=free_port(),
        redis_url=redis_url,
        run_dir=tmp_path,
        bus=FAST_BUS,
        registry=FAST_REGISTRY,  # the gateway fixture's: the same registry token
        # Cheap hashes: these tests are about the edge, not the password cost.
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
    )
    app = create_app(settings, registry=CollectorRegistry())
    async with serve_app(app, settings.port) as url:
        yield url


async def register(http: aiohttp.ClientSession, base: str, username: str) -> str:
    """Register through `base` (the gateway); the new account's id."""
    body = {"username": username, "email": f"{username}@example.com", "password": PASSWORD}
    async with http.post(f"{base}/api/v1/users/register", json=body) as response:
        assert response.status == 201, await response.text()
        user_id: str = (await response.json())["id"]
        return user_id


async def login(http: aiohttp.ClientSession, base: str, username: str) -> str:
    """Log in through `base`; the access token."""
    body = {"username": username, "password": PASSWORD}
    async with http.post(f"{base}/api/v1/users/login", json=body) as response:
        assert response.status == 200, await response.text()
        token: str = (await response.json())["access_token"]
        return token
