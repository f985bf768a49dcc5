"""What the gamification API answers: declared once in contracts/api/gamification.py
(the gateway documents the same models)."""

from __future__ import annotations

from contracts.api.gamification import AchievementPublic, LeaderboardEntry, ProfilePublic

__all__ = ["AchievementPublic", "LeaderboardEntry", "ProfilePublic"]
