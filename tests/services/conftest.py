"""Service test fixtures: a database URL for each backend a service must run on.

`database_url` is parametrized: an SQLite file in tmp_path, and a fresh
PostgreSQL database (created for the test, dropped after it) next to the one
`postgres_url` (tests/conftest.py) reaches; when none answers, the postgres
cases skip with the reason shown in the summary (`-ra`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
        return
    base = request.getfixturevalue("postgres_url")
    name = f"astra_test_{uuid.uuid4().hex[:12]}"  # the service creates its tables in it
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
