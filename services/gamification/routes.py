"""`/api/v1/gamification`: the caller's own profile and the public leaderboard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Query
from redis.exceptions import RedisError

from backbone.service import ProblemError
from backbone.service.auth import CurrentUser, OptionalUser
from services.gamification.deps import Gamification
from services.gamification.rules import ACHIEVEMENTS, level_for, xp_for_level
from services.gamification.schemas import AchievementPublic, LeaderboardEntry, ProfilePublic

router = APIRouter(prefix="/api/v1/gamification", tags=["gamification"])


@asynccontextmanager
async def _redis_answers() -> AsyncIterator[None]:
    try:
        yield
    except RedisError as e:
        raise ProblemError(503, "Unavailable", "Gamification state is unreachable.") from e


@router.get("/profile", response_model=ProfilePublic)
async def profile(ctx: Gamification, user: CurrentUser) -> ProfilePublic:
    """The caller's XP, level and achievements."""
    async with _redis_answers():
        state = await ctx.store.profile(user.subject)
    level = level_for(state.xp)
    achievements = sorted(state.achievements.items(), key=lambda item: (item[1], item[0]))
    return ProfilePublic(
        user_id=user.subject,
        username=state.username or user.username or user.subject,
        xp=state.xp,
        level=level,
        achievements=[
            AchievementPublic(
                code=code,
                title=ACHIEVEMENTS[code].title if code in ACHIEVEMENTS else code,
                unlocked_at=at,
            )
            for code, at in achievements
        ],
        next_level_xp=xp_for_level(level + 1),
    )


@router.get("/leaderboard", response_model=list[LeaderboardEntry])
async def leaderboard(
    ctx: Gamification,
    _: OptionalUser,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> list[LeaderboardEntry]:
    """The users with the most XP, best first."""
    async with _redis_answers():
        top = await ctx.store.leaderboard(limit)
    return [
        LeaderboardEntry(
            rank=rank, user_id=r.user_id, username=r.username, xp=r.xp, level=level_for(r.xp)
        )
        for rank, r in enumerate(top, start=1)
    ]
