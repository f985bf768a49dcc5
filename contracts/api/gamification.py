"""What the gamification API answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class AchievementPublic(BaseModel):
    code: str
    title: str
    unlocked_at: datetime


class ProfilePublic(BaseModel):
    user_id: str
    username: str
    xp: int
    level: int
    achievements: list[AchievementPublic]
    next_level_xp: int = Field(description="Cumulative XP the next level needs.")


class LeaderboardEntry(BaseModel):
    rank: int = Field(ge=1)
    user_id: str
    username: str
    xp: int
    level: int
