from __future__ import annotations

from datetime import datetime

from backbone.bus.streams import EventType
from contracts._base import EventData


class XpGainedData(EventData):
    user_id: str
    username: str
    amount: int
    total_xp: int
    reason: str
    source_event_id: str


class LevelUpData(EventData):
    user_id: str
    username: str
    level: int
    total_xp: int


class AchievementUnlockedData(EventData):
    user_id: str
    username: str
    achievement: str  # stable code, e.g. "first_trade"
    title: str
    unlocked_at: datetime


XpGained = EventType("gamification", "xp_gained", 1, XpGainedData, "XP was awarded.")
LevelUp = EventType("gamification", "level_up", 1, LevelUpData, "A user reached a new level.")
AchievementUnlocked = EventType(
    "gamification",
    "achievement_unlocked",
    1,
    AchievementUnlockedData,
    "A user unlocked an achievement.",
)
