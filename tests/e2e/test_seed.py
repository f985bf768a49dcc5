"""`make seed-data` fills the feed and the leaderboard through the public API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from stack.seed import DEMO_USERS, seed
from tests.e2e.conftest import Stack
from tests.support.poll import poll_until

pytestmark = pytest.mark.e2e


async def test_seed_data_shows_up_in_feed_and_leaderboard(stack: Stack) -> None:
    gateway = stack.url("gateway-1")
    assert await seed(gateway, trades_per_user=2) == 0
    assert await seed(gateway, trades_per_user=1) == 0  # a second run logs in instead
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:

        async def board() -> Any:
            r = await http.get("/api/v1/gamification/leaderboard", params={"limit": 10})
            rows = r.json() if r.status_code == 200 else []
            return rows if len(rows) == len(DEMO_USERS) else None

        rows = await poll_until(board, "every demo user on the leaderboard", 15)
        assert {row["username"] for row in rows} == set(DEMO_USERS)
        assert all(row["xp"] >= 30 for row in rows)  # 3 trades each, 10 XP per trade

        feed = await http.get("/api/v1/social/feed", params={"limit": 100})
        kinds = {item["kind"] for item in feed.json()["items"]}
        assert {"trade", "achievement"} <= kinds
