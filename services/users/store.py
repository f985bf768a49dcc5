"""Queries on the users table, run inside the caller's session and transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Row, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.users.models import users


async def taken(session: AsyncSession, username: str, email: str) -> tuple[bool, bool]:
    """(username taken, email taken)."""
    rows = (
        await session.execute(
            select(users.c.username, users.c.email).where(
                or_(users.c.username == username, users.c.email == email)
            )
        )
    ).all()
    return any(r.username == username for r in rows), any(r.email == email for r in rows)


async def insert_user(
    session: AsyncSession,
    *,
    user_id: str,
    username: str,
    email: str,
    password_hash: str,
    created_at: datetime,
) -> None:
    await session.execute(
        insert(users).values(
            id=user_id,
            username=username,
            email=email,
            password_hash=password_hash,
            created_at=created_at,
        )
    )


async def by_username(session: AsyncSession, username: str) -> Row | None:  # type: ignore[type-arg]
    return (await session.execute(select(users).where(users.c.username == username))).first()


async def by_id(session: AsyncSession, user_id: str) -> Row | None:  # type: ignore[type-arg]
    return (await session.execute(select(users).where(users.c.id == user_id))).first()


async def record_login(
    session: AsyncSession, user_id: str, at: datetime, new_hash: str | None = None
) -> None:
    values: dict[str, object] = {"last_login_at": at}
    if new_hash is not None:
        values["password_hash"] = new_hash
    await session.execute(update(users).where(users.c.id == user_id).values(**values))
