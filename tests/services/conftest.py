"""Service test fixtures: a database URL for each backend a service must run on.

`database_url` is parametrized: an SQLite file in tmp_path, and a fresh
PostgreSQL database (created for the test, dropped after it) at
ASTRA_TEST_POSTGRES_URL. When PostgreSQL is unreachable, the postgres cases
skip with the reason shown in the summary (`-ra`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

POSTGRES_URL = os.environ.get(
    "ASTRA_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
_unreachable: list[str] = []  # remembered, so one refusal skips the rest at once


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'service.db'}"
        return
    if _unreachable:
        pytest.skip(_unreachable[0])
    name = f"astra_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(
        POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"timeout": 3}
    )
    try:
        try:
            async with admin.connect() as conn:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as e:
            _unreachable.append(f"PostgreSQL unreachable at {POSTGRES_URL}: {e}")
            pytest.skip(_unreachable[0])
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()
