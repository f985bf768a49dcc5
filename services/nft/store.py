"""Minting and reading tokens; a mint and its `nft_minted` event commit in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backbone.outbox import Outbox
from contracts.gamification import AchievementUnlockedData
from contracts.nft import NftMinted, NftMintedData
from services.nft.models import (
    ACHIEVEMENT_MAX,
    NAME_MAX,
    USER_ID_MAX,
    USERNAME_MAX,
    tokens,
)
from services.nft.rewards import Rarity, reward_for

# Token ids are derived, not drawn: a (user, achievement) always names the same token.
TOKEN_NAMESPACE = uuid.UUID("5b0e8e8e-6a53-4a4e-9d1c-2f9b1f0c7a11")


class MintRefused(ValueError):
    """The unlock cannot become a token (a field exceeds what the table holds)."""


def token_id_for(user_id: str, achievement: str) -> str:
    return str(uuid.uuid5(TOKEN_NAMESPACE, f"{user_id}\x1f{achievement}"))


@dataclass(frozen=True, slots=True)
class Token:
    token_id: str
    user_id: str
    username: str
    achievement: str
    name: str
    rarity: Rarity
    metadata: dict[str, str]
    minted_at: datetime


class NftStore:
    """The token table, behind the two things the service does with it.

    store = NftStore(parts.sessions, parts.outbox)
    minted = await store.mint(unlocked, source_event_id)   # None: it existed already
    tokens = await store.collection("user-1", limit=100)
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: Outbox) -> None:
        self._sessions = sessions
        self._outbox = outbox

    async def mint(
        self, unlocked: AchievementUnlockedData, source_event_id: str
    ) -> NftMintedData | None:
        """Mint the achievement's token and queue `nft_minted`, or nothing if it exists."""
        _check_fits(unlocked)
        reward = reward_for(unlocked.achievement, unlocked.title)
        minted = NftMintedData(
            token_id=token_id_for(unlocked.user_id, unlocked.achievement),
            user_id=unlocked.user_id,
            username=unlocked.username,
            achievement=unlocked.achievement,
            name=reward.name[:NAME_MAX],
            rarity=reward.rarity,
            metadata={
                "achievement": unlocked.achievement,
                "title": unlocked.title,
                "rarity": reward.rarity,
                "unlocked_at": unlocked.unlocked_at.isoformat(),
                "source_event_id": source_event_id,
            },
            minted_at=datetime.now(UTC),
        )
        try:
            async with self._sessions() as session, session.begin():
                if await self._exists(session, unlocked.user_id, unlocked.achievement):
                    return None
                await session.execute(insert(tokens).values(**_row(minted, source_event_id)))
                await self._outbox.add(session, NftMinted, minted)
        except IntegrityError:
            # A concurrent delivery (another event for the same unlock) committed first.
            async with self._sessions() as session:
                if await self._exists(session, unlocked.user_id, unlocked.achievement):
                    return None
            raise
        return minted

    async def collection(self, user_id: str, *, limit: int) -> list[Token]:
        """The user's tokens, newest first."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(tokens)
                .where(tokens.c.user_id == user_id)
                .order_by(tokens.c.minted_at.desc(), tokens.c.token_id)
                .limit(limit)
            )
            return [_token(row._mapping) for row in rows]

    async def token(self, user_id: str, token_id: str) -> Token | None:
        """One of the user's tokens; None for another user's (never says it exists)."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(tokens).where(tokens.c.token_id == token_id, tokens.c.user_id == user_id)
                )
            ).first()
            return _token(row._mapping) if row is not None else None

    @staticmethod
    async def _exists(session: AsyncSession, user_id: str, achievement: str) -> bool:
        found = await session.scalar(
            select(tokens.c.token_id).where(
                tokens.c.user_id == user_id, tokens.c.achievement == achievement
            )
        )
        return found is not None


def _check_fits(unlocked: AchievementUnlockedData) -> None:
    for field, value, limit in (
        ("user_id", unlocked.user_id, USER_ID_MAX),
        ("username", unlocked.username, USERNAME_MAX),
        ("achievement", unlocked.achievement, ACHIEVEMENT_MAX),
    ):
        if not value or len(value) > limit:
            raise MintRefused(f"{field} must be 1..{limit} characters, got {len(value)}")


def _row(minted: NftMintedData, source_event_id: str) -> dict[str, Any]:
    return {
        "token_id": minted.token_id,
        "user_id": minted.user_id,
        "username": minted.username,
        "achievement": minted.achievement,
        "name": minted.name,
        "rarity": minted.rarity,
        "attributes": dict(minted.metadata),
        "source_event_id": source_event_id,
        "minted_at": minted.minted_at,
    }


def _token(row: Any) -> Token:
    return Token(
        token_id=row["token_id"],
        user_id=row["user_id"],
        username=row["username"],
        achievement=row["achievement"],
        name=row["name"],
        rarity=cast(Rarity, row["rarity"]),  # only Rarity values are ever written
        metadata={str(k): str(v) for k, v in (row["attributes"] or {}).items()},
        minted_at=row["minted_at"],
    )
