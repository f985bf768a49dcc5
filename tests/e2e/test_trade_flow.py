"""A trade's consequences arrive through every consumer group, each exactly once,
even when a consumer of each group is killed with SIGKILL during the run."""

from __future__ import annotations

import os
import signal
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.support.poll import poll_until

pytestmark = pytest.mark.e2e


async def register_and_login(http: httpx.AsyncClient, users: str, name: str) -> str:
    body = {"username": name, "email": f"{name}@example.com", "password": "correct horse 1"}
    created = await http.post(f"{users}/api/v1/users/register", json=body)
    assert created.status_code == 201, created.text
    login = await http.post(
        f"{users}/api/v1/users/login", json={"username": name, "password": body["password"]}
    )
    assert login.status_code == 200, login.text
    return str(login.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def feed_kinds(http: httpx.AsyncClient, social: str, user: str) -> list[tuple[str, str]]:
    response = await http.get(f"{social}/api/v1/social/feed", params={"user": user, "limit": 100})
    assert response.status_code == 200, response.text
    return [(item["kind"], item["id"]) for item in response.json()["items"]]


async def test_trade_consequences_arrive_exactly_once(stack: Stack) -> None:
    users, trading = stack.url("users-1"), stack.url("trading-1")
    gam, nft, social = stack.url("gamification-1"), stack.url("nft-1"), stack.url("social-1")
    async with httpx.AsyncClient(timeout=10) as http:
        alice = await register_and_login(http, users, "alice")
        bob = await register_and_login(http, users, "bob")

        order = await http.post(
            f"{trading}/api/v1/trading/orders",
            json={"symbol": "ASTR", "side": "buy", "quantity": "2"},
            headers=bearer(alice),
        )
        if order.status_code == 422 and "symbol" in order.text:
            markets = (await http.get(f"{trading}/api/v1/trading/markets")).json()
            order = await http.post(
                f"{trading}/api/v1/trading/orders",
                json={"symbol": markets[0]["symbol"], "side": "buy", "quantity": "2"},
                headers=bearer(alice),
            )
        assert order.status_code == 201, order.text
        symbol = order.json()["symbol"]

        async def profile_ready() -> Any:
            r = await http.get(f"{gam}/api/v1/gamification/profile", headers=bearer(alice))
            codes = [a["code"] for a in r.json().get("achievements", [])] if r.is_success else []
            return r.json() if "first_trade" in codes and r.json()["xp"] > 0 else None

        profile = await poll_until(profile_ready, "XP and first_trade in the profile", 3.0)
        assert profile["xp"] >= 10

        async def collection() -> Any:
            r = await http.get(f"{nft}/api/v1/nft/collection", headers=bearer(alice))
            return r.json() if r.is_success and r.json() else None

        minted = await poll_until(collection, "the reward NFT", 3.0)
        assert [n["achievement"] for n in minted] == ["first_trade"]

        async def feed_complete() -> Any:
            kinds = [k for k, _ in await feed_kinds(http, social, "alice")]
            return kinds if {"trade", "achievement", "nft"} <= set(kinds) else None

        kinds = await poll_until(feed_complete, "trade, achievement and mint in the feed", 3.0)
        assert kinds.count("trade") == 1
        assert kinds.count("achievement") == 1
        assert kinds.count("nft") == 1

        # Kill one consumer of each group mid-run; keep trading while they are down.
        for name in ("gamification-1", "nft-1", "social-1"):
            os.kill(stack.pid(name), signal.SIGKILL)
        for _ in range(9):
            r = await http.post(
                f"{trading}/api/v1/trading/orders",
                json={"symbol": symbol, "side": "buy", "quantity": "1"},
                headers=bearer(alice),
            )
            assert r.status_code == 201, r.text

        async def ten_trades() -> Any:
            try:
                r = await http.get(f"{gam}/api/v1/gamification/profile", headers=bearer(alice))
            except httpx.TransportError:
                return None  # still restarting
            codes = [a["code"] for a in r.json().get("achievements", [])] if r.is_success else []
            return r.json() if "ten_trades" in codes else None

        profile = await poll_until(ten_trades, "ten_trades after the restarts", 30.0)
        codes = [a["code"] for a in profile["achievements"]]
        assert len(codes) == len(set(codes))

        async def two_nfts() -> Any:
            try:
                r = await http.get(f"{nft}/api/v1/nft/collection", headers=bearer(alice))
            except httpx.TransportError:
                return None
            return r.json() if r.is_success and len(r.json()) >= 2 else None

        minted = await poll_until(two_nfts, "the ten_trades NFT", 30.0)
        achievements = [n["achievement"] for n in minted]
        assert sorted(achievements) == sorted(set(achievements))  # one per achievement

        async def all_ten_in_feed() -> Any:
            try:
                items = await feed_kinds(http, social, "alice")
            except httpx.TransportError:
                return None
            kinds = [k for k, _ in items]
            return items if kinds.count("trade") >= 10 and kinds.count("nft") >= 2 else None

        items = await poll_until(all_ten_in_feed, "all ten trades in the feed", 30.0)
        ids = [i for _, i in items]
        assert len(ids) == len(set(ids))  # every entry once
        assert [k for k, _ in items].count("trade") == 10

        # Bob sees only his own data; alice's order does not leak.
        order_id = order.json()["order_id"]
        other = await http.get(f"{trading}/api/v1/trading/orders/{order_id}", headers=bearer(bob))
        assert other.status_code == 404
        portfolio = await http.get(f"{trading}/api/v1/trading/portfolio", headers=bearer(bob))
        assert portfolio.json()["positions"] == []
        bob_nfts = await http.get(f"{nft}/api/v1/nft/collection", headers=bearer(bob))
        assert bob_nfts.json() == []


PRIVATE_ROUTES = {
    "users-1": "/api/v1/users/me",
    "trading-1": "/api/v1/trading/portfolio",
    "gamification-1": "/api/v1/gamification/profile",
    "nft-1": "/api/v1/nft/collection",
}


async def test_forged_identity_headers_are_rejected_everywhere(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        for name, path in PRIVATE_ROUTES.items():
            r = await http.get(
                stack.url(name) + path, headers={"X-User-ID": "1", "X-User-Name": "admin"}
            )
            assert r.status_code == 401, (name, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
