"""Gamification: XP, levels, achievements and the leaderboard, fed by executed trades."""
