"""`make seed-data`: demo users and trades, so a new user sees a live feed and leaderboard.

Talks only to the public API through the gateway (`ASTRA_SEED_URL`, default
http://127.0.0.1:8000 plus `ASTRA_PORT_OFFSET`). Safe to run twice: existing users
log in instead of registering.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from typing import Any

import aiohttp

from stack.config import GATEWAY_PORT

DEMO_USERS = ("ada", "grace", "linus", "margaret", "ken")
PASSWORD = "demo-password-1"  # noqa: S105 - public demo accounts on a local stack


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any]:
    """One request; a 429 is waited out as its Retry-After says (login is rate limited)."""
    for _ in range(20):
        async with session.request(method, url, **kwargs) as response:
            body = await response.json(content_type=None)
            if response.status != 429:
                return response.status, body
            wait = min(float(response.headers.get("Retry-After", "1")), 30.0)
        print(f"  rate limited; retrying in {wait:.0f}s")
        await asyncio.sleep(wait)
    return 429, None


async def seed(base: str, trades_per_user: int = 4, seed: int = 7) -> int:
    rng = random.Random(seed)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        status, markets = await _call(session, "GET", f"{base}/api/v1/trading/markets")
        if status != 200:
            print(f"the stack does not answer at {base} ({status}): is `make up` running?")
            return 1
        symbols = [m["symbol"] for m in markets]
        for name in DEMO_USERS:
            body = {"username": name, "email": f"{name}@demo.astratrade", "password": PASSWORD}
            status, _ = await _call(session, "POST", f"{base}/api/v1/users/register", json=body)
            if status not in (201, 409):
                print(f"register {name}: HTTP {status}")
                return 1
            login = {"username": name, "password": PASSWORD}
            status, token = await _call(session, "POST", f"{base}/api/v1/users/login", json=login)
            if status != 200:
                print(f"login {name}: HTTP {status}")
                return 1
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            filled = 0
            for _ in range(trades_per_user):
                order = {"symbol": rng.choice(symbols), "side": "buy", "quantity": "1"}
                status, _ = await _call(
                    session, "POST", f"{base}/api/v1/trading/orders", json=order, headers=headers
                )
                filled += status == 201
            print(f"  {name:<9} {filled} trades")
    print(f"\nfeed:        {base}/api/v1/social/feed")
    print(f"leaderboard: {base}/api/v1/gamification/leaderboard")
    return 0


def main() -> int:
    offset = int(os.environ.get("ASTRA_PORT_OFFSET", "0"))
    base = os.environ.get("ASTRA_SEED_URL", f"http://127.0.0.1:{GATEWAY_PORT + offset}")
    print(f"seeding demo data through {base}")
    return asyncio.run(seed(base.rstrip("/")))


if __name__ == "__main__":
    sys.exit(main())
