"""Gamification against a real redis-server and uvicorn: XP, levels, achievements, access."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from backbone import keys
from backbone.bus.envelope import encode
from backbone.bus.publisher import Publisher
from backbone.bus.streams import EventType
from backbone.config import BusSettings
from contracts.gamification import AchievementUnlocked, LevelUp, XpGained
from contracts.trading import TradeExecuted, TradeExecutedData
from services.gamification.app import create_app
from services.gamification.config import Settings
from services.gamification.handlers import GROUP
from services.gamification.rules import level_for, xp_for_level
from stack.netutil import free_port
from tests.support.asgi_server import service_client
from tests.support.poll import poll_until
from tests.support.settings import FAST_BUS, FAST_REGISTRY
from tests.support.tokens import TokenIssuer

pytestmark = pytest.mark.integration

TRADES = TradeExecuted.stream_key


@asynccontextmanager
async def gamification(
    redis_url: str, tmp_path: Path, issuer: TokenIssuer
) -> AsyncIterator[httpx.AsyncClient]:
    """One gamification instance, its consumer running inside the lifespan."""
    settings = Settings(
        env="test",
        instance_id="gamification-1",
        port=free_port(),
        redis_url=redis_url,
        run_dir=tmp_path,
        jwks_url=issuer.jwks_url,
        bus=FAST_BUS,
        registry=FAST_REGISTRY,
    )
    async with service_client(create_app, settings) as http:
        yield http


def trade(
    n: int, *, user: str = "u-alice", name: str = "alice", side: str = "buy", pnl: str = "0"
) -> TradeExecutedData:
    return TradeExecutedData(
        order_id=f"o-{user}-{n}",
        user_id=user,
        username=name,
        symbol="BTC-USD",
        side=side,
        quantity=Decimal("0.5"),
        price=Decimal("100"),
        notional=Decimal("50"),
        realized_pnl=Decimal(pnl),
        trade_number=n,
        executed_at=datetime(2025, 1, 1, 12, 0, n, tzinfo=UTC),
    )


async def drained(redis: aioredis.Redis, stream: str = TRADES, group: str = GROUP) -> bool:
    """The group has read every entry of the stream and acked them all."""
    last = (await redis.xinfo_stream(stream))["last-generated-id"]
    for info in await redis.xinfo_groups(stream):
        if info["name"] == group.encode():
            return bool(info["last-delivered-id"] == last and info["pending"] == 0)
    return False


async def published(redis: aioredis.Redis, event_type: EventType[Any]) -> list[dict[str, Any]]:
    raw = await redis.xrange(event_type.stream_key)
    entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", raw)
    return [orjson.loads(fields[b"envelope"])["data"] for _, fields in entries]


def bearer(issuer: TokenIssuer, user: str, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.token(user, name)}"}


# --- the rules, without I/O -------------------


def test_level_table() -> None:
    assert [xp_for_level(n) for n in range(1, 11)] == [0, 20, 60, 120, 200, 300, 420, 560, 720, 900]
    for xp in range(0, 5000):
        level = level_for(xp)
        assert xp_for_level(level) <= xp < xp_for_level(level + 1)


# --- the service -----------------------------------------------------------------


async def test_xp_levels_and_achievements_for_a_sequence_of_trades(
    redis_server: Any, redis_client: aioredis.Redis, tmp_path: Path, issuer: TokenIssuer
) -> None:
    # alice: buys earn 10, profitable sells 35, a losing sell (#4) only 10.
    sells = {2: "5", 4: "-3", 6: "1", 8: "2", 11: "4"}
    alice = [
        trade(n, side="sell" if n in sells else "buy", pnl=sells.get(n, "0")) for n in range(1, 13)
    ]
    bob = [trade(n, user="u-bob", name="bob") for n in (1, 2)]
    publisher = Publisher(
        redis_client, producer="trading", settings=BusSettings(), registry=CollectorRegistry()
    )
    # Published before the service starts: the first read takes them all in one batch,
    # so each handler must see what the previous ones of the batch queued.
    await publisher.publish_batch([(TradeExecuted, t) for t in alice[:6] + bob + alice[6:]])

    async with gamification(redis_server.url, tmp_path, issuer) as http:
        await poll_until(lambda: drained(redis_client), "all trades processed", timeout=10)

        xp = [e for e in await published(redis_client, XpGained) if e["user_id"] == "u-alice"]
        totals = [10, 45, 55, 65, 75, 110, 120, 155, 165, 175, 210, 220]
        assert [e["total_xp"] for e in xp] == totals
        assert [e["reason"] for e in xp][:2] == ["trade", "profitable_sell"]
        levels = [e for e in await published(redis_client, LevelUp) if e["user_id"] == "u-alice"]
        assert [(e["level"], e["total_xp"]) for e in levels] == [
            (2, 45),
            (3, 65),
            (4, 120),
            (5, 210),
        ]
        unlocked = await published(redis_client, AchievementUnlocked)
        assert sorted((e["user_id"], e["achievement"]) for e in unlocked) == [
            ("u-alice", "first_profitable_sell"),
            ("u-alice", "first_trade"),
            ("u-alice", "level_5"),
            ("u-alice", "ten_trades"),
            ("u-bob", "first_trade"),
        ]

        profile = await http.get(
            "/api/v1/gamification/profile", headers=bearer(issuer, "u-alice", "alice")
        )
        assert profile.status_code == 200, profile.text
        body = profile.json()
        assert (body["user_id"], body["username"], body["xp"], body["level"]) == (
            "u-alice",
            "alice",
            220,
            5,
        )
        assert body["next_level_xp"] == 300
        assert [a["code"] for a in body["achievements"]] == [
            "first_trade",
            "first_profitable_sell",
            "ten_trades",
            "level_5",
        ]
        assert body["achievements"][0]["title"] == "First Trade"

        board = await http.get("/api/v1/gamification/leaderboard", params={"limit": 5})
        assert board.status_code == 200
        assert board.json() == [
            {"rank": 1, "user_id": "u-alice", "username": "alice", "xp": 220, "level": 5},
            {"rank": 2, "user_id": "u-bob", "username": "bob", "xp": 20, "level": 2},
        ]
        top1 = await http.get("/api/v1/gamification/leaderboard", params={"limit": 1})
        assert [e["user_id"] for e in top1.json()] == ["u-alice"]

        # A trade published while the service runs starts from the committed state.
        await publisher.publish(TradeExecuted, trade(13))
        await poll_until(lambda: drained(redis_client), "trade 13 processed", timeout=5)
        xp = [e for e in await published(redis_client, XpGained) if e["user_id"] == "u-alice"]
        assert xp[-1]["total_xp"] == 230


async def test_a_trade_delivered_twice_counts_once(
    redis_server: Any, redis_client: aioredis.Redis, tmp_path: Path, issuer: TokenIssuer
) -> None:
    _, body = encode(
        TradeExecuted,
        trade(1, user="u-carol", name="carol", side="sell", pnl="9"),
        producer="trading",
        correlation_id="c-1",
    )
    async with gamification(redis_server.url, tmp_path, issuer) as http:
        for _ in range(2):  # an outbox retry: the same envelope twice in a row
            await redis_client.xadd(TRADES, {keys.ENVELOPE_FIELD: body})
        await poll_until(lambda: drained(redis_client), "both copies handled", timeout=5)
        await redis_client.xadd(TRADES, {keys.ENVELOPE_FIELD: body})  # and once more, later
        await redis_client.xadd(TRADES, {keys.ENVELOPE_FIELD: b"{not an envelope"})
        await poll_until(lambda: drained(redis_client), "late copy handled", timeout=5)

        unlocked = await published(redis_client, AchievementUnlocked)
        assert sorted(e["achievement"] for e in unlocked) == [
            "first_profitable_sell",
            "first_trade",
        ]
        assert [e["total_xp"] for e in await published(redis_client, XpGained)] == [35]
        assert [e["level"] for e in await published(redis_client, LevelUp)] == [2]
        profile = await http.get(
            "/api/v1/gamification/profile", headers=bearer(issuer, "u-carol", "carol")
        )
        assert (profile.json()["xp"], profile.json()["level"]) == (35, 2)
        # The poison entry went to the dead-letter stream; the service is still ready.
        assert await redis_client.xlen(keys.dead_letter_stream(TRADES)) == 1
        assert (await http.get("/health/ready")).status_code == 200


async def test_profiles_are_private_and_inputs_validated(
    redis_server: Any, redis_client: aioredis.Redis, tmp_path: Path, issuer: TokenIssuer
) -> None:
    publisher = Publisher(
        redis_client, producer="trading", settings=BusSettings(), registry=CollectorRegistry()
    )
    await publisher.publish(TradeExecuted, trade(1))
    async with gamification(redis_server.url, tmp_path, issuer) as http:
        await poll_until(lambda: drained(redis_client), "trade processed", timeout=5)
        path = "/api/v1/gamification/profile"

        anonymous = await http.get(path)
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
        forged = await http.get(path, headers={"X-User-ID": "u-alice", "X-Username": "alice"})
        assert forged.status_code == 401
        garbage = await http.get(path, headers={"Authorization": "Bearer not.a.jwt"})
        assert garbage.status_code == 401
        async with TokenIssuer() as stranger:  # signed, but by a key the JWKS does not hold
            foreign = await http.get(
                path, headers={"Authorization": f"Bearer {stranger.token('u-alice')}"}
            )
        assert foreign.status_code == 401

        # B asking, even with A's id in a query or header, sees B's own (empty) profile.
        mine = await http.get(
            path,
            params={"user_id": "u-alice"},
            headers={**bearer(issuer, "u-bob", "bob"), "X-User-ID": "u-alice"},
        )
        assert mine.status_code == 200
        assert mine.json() == {
            "user_id": "u-bob",
            "username": "bob",
            "xp": 0,
            "level": 1,
            "achievements": [],
            "next_level_xp": 20,
        }

        board = "/api/v1/gamification/leaderboard"
        assert (await http.get(board)).status_code == 200
        assert (await http.get(board, headers=bearer(issuer, "u-bob", "bob"))).status_code == 200
        bad_token = await http.get(board, headers={"Authorization": "Bearer nope"})
        assert bad_token.status_code == 401
        for limit in ("0", "101", "-1", "ten", "1e3", "9" * 40):
            bad = await http.get(board, params={"limit": limit})
            assert bad.status_code == 422, limit
            assert bad.headers["content-type"] == "application/problem+json"
