"""The social feed against a real redis-server and uvicorn, and the whole cross-domain workflow."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from backbone import keys
from backbone.bus.envelope import encode
from backbone.bus.publisher import Publisher
from backbone.bus.streams import EventType
from backbone.config import BusSettings
from backbone.service import ServiceSettings
from contracts.gamification import (
    AchievementUnlocked,
    AchievementUnlockedData,
    LevelUp,
    LevelUpData,
)
from contracts.nft import NftMinted, NftMintedData
from contracts.trading import TradeExecuted, TradeExecutedData
from services.gamification import app as gamification_app
from services.gamification import config as gamification_config
from services.nft import app as nft_app
from services.nft import config as nft_config
from services.social import app as social_app
from services.social import config as social_config
from services.social.handlers import GROUP
from stack.netutil import free_port
from tests.support.asgi_server import service_client
from tests.support.poll import poll_until
from tests.support.settings import FAST_BUS, FAST_REGISTRY
from tests.support.tokens import TokenIssuer

pytestmark = pytest.mark.integration

FEED = "/api/v1/social/feed"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
FEED_STREAMS = (TradeExecuted, LevelUp, AchievementUnlocked, NftMinted)


def common(redis_url: str, tmp_path: Path, issuer: TokenIssuer, name: str) -> dict[str, Any]:
    return {
        "env": "test",
        "instance_id": f"{name}-1",
        "port": free_port(),
        "redis_url": redis_url,
        "run_dir": tmp_path / name,
        "jwks_url": issuer.jwks_url,
        "bus": FAST_BUS,
        "registry": FAST_REGISTRY,
    }


@asynccontextmanager
async def serve(create_app: Any, settings: ServiceSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with service_client(create_app, settings) as http:
        yield http


def social(redis_url: str, tmp_path: Path, issuer: TokenIssuer, **overrides: Any) -> Any:
    settings = social_config.Settings(**common(redis_url, tmp_path, issuer, "social"), **overrides)
    return serve(social_app.create_app, settings)


def trade(n: int, user: str = "u-alice", name: str = "alice", **kw: Any) -> TradeExecutedData:
    fields: dict[str, Any] = {
        "order_id": f"o-{user}-{n}",
        "user_id": user,
        "username": name,
        "symbol": "BTC-USD",
        "side": "buy",
        "quantity": Decimal("0.50000000"),
        "price": Decimal("100.00"),
        "notional": Decimal("50"),
        "realized_pnl": Decimal("0"),
        "trade_number": n,
        "executed_at": T0 + timedelta(seconds=n),
    }
    return TradeExecutedData(**{**fields, **kw})


def envelope(event_type: EventType[Any], data: BaseModel, at: datetime) -> bytes:
    producer = event_type.stream.domain  # consumers refuse events from undeclared producers
    return encode(event_type, data, producer=producer, correlation_id="c-1", occurred_at=at)[1]


async def drained(redis: aioredis.Redis, group: str = GROUP) -> bool:
    """The group has read and acked every entry of every feed stream."""
    for event_type in FEED_STREAMS:
        stream = event_type.stream_key
        if not await redis.exists(stream):
            continue
        last = (await redis.xinfo_stream(stream))["last-generated-id"]
        groups = {g["name"]: g for g in await redis.xinfo_groups(stream)}
        info = groups.get(group.encode())
        if info is None or info["last-delivered-id"] != last or info["pending"] != 0:
            return False
    return True


async def all_pages(
    http: httpx.AsyncClient, limit: int, **params: str
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        response = await http.get(FEED, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "pagination does not end"


def newest_first(items: list[dict[str, Any]]) -> bool:
    keys_ = [(datetime.fromisoformat(i["occurred_at"]), i["id"]) for i in items]
    return keys_ == sorted(keys_, reverse=True)


# --- the feed ---------------------------------------------------------------------


async def test_feed_is_newest_first_once_each_and_pages_cover_it(
    redis_server: Any, redis_client: aioredis.Redis, tmp_path: Path, issuer: TokenIssuer
) -> None:
    tie = T0 + timedelta(minutes=5)  # four events at the same millisecond
    events: list[tuple[EventType[Any], BaseModel, datetime]] = [
        *((TradeExecuted, trade(n), T0 + timedelta(seconds=n)) for n in range(1, 6)),
        *((TradeExecuted, trade(n, "u-bob", "bob"), tie) for n in range(1, 4)),
        (
            TradeExecuted,
            trade(6, side="sell", realized_pnl=Decimal("12.50"), quantity=Decimal("1E+1")),
            tie,
        ),
        (LevelUp, LevelUpData(user_id="u-alice", username="alice", level=2, total_xp=45), T0),
        (
            AchievementUnlocked,
            AchievementUnlockedData(
                user_id="u-alice",
                username="alice",
                achievement="first_trade",
                title="First Trade",
                unlocked_at=T0,
            ),
            T0 + timedelta(seconds=1),
        ),
        (
            NftMinted,
            NftMintedData(
                token_id="t-1",
                user_id="u-alice",
                username="alice",
                achievement="first_trade",
                name="First Trade Badge",
                rarity="common",
                metadata={},
                minted_at=T0,
            ),
            T0 + timedelta(seconds=2),
        ),
    ]
    bodies = [(et, envelope(et, data, at)) for et, data, at in events]
    bodies += [bodies[0], bodies[-1]]  # delivered twice: a trade and a mint
    for event_type, body in bodies:
        await redis_client.xadd(event_type.stream_key, {keys.ENVELOPE_FIELD: body})

    async with social(redis_server.url, tmp_path, issuer) as http:
        await poll_until(lambda: drained(redis_client), "feed events handled", timeout=10)

        everything = await http.get(FEED, params={"limit": 100})
        assert everything.status_code == 200
        items = everything.json()["items"]
        assert everything.json()["next_cursor"] is None
        assert len(items) == len(events) == 12
        assert len({i["id"] for i in items}) == 12
        assert newest_first(items)
        assert {i["kind"] for i in items} == {"trade", "level_up", "achievement", "nft"}
        texts = {i["text"] for i in items}
        assert "alice bought 0.5 BTC-USD at 100" in texts
        assert "alice sold 10 BTC-USD at 100 (realized P&L +12.5)" in texts
        assert "alice reached level 2" in texts
        assert "alice unlocked the achievement First Trade" in texts
        assert "alice earned the common NFT First Trade Badge" in texts
        nft = next(i for i in items if i["kind"] == "nft")
        assert nft["data"] == {
            "token_id": "t-1",
            "name": "First Trade Badge",
            "rarity": "common",
            "achievement": "first_trade",
        }

        for limit in (1, 3, 5, 11, 12):
            pages = await all_pages(http, limit)
            assert all(len(p) == limit for p in pages[:-1])
            assert [i for page in pages for i in page] == items, limit

        alice = [i for p in await all_pages(http, 2, user="alice") for i in p]
        assert alice == [i for i in items if i["user_id"] == "u-alice"]
        assert len(alice) == 9
        by_id = [i for p in await all_pages(http, 2, user="u-bob") for i in p]
        assert [i["username"] for i in by_id] == ["bob"] * 3
        assert (await http.get(FEED, params={"user": "nobody"})).json() == {
            "items": [],
            "next_cursor": None,
        }

        # An entry newer than the first page arrives while a client pages through.
        first = (await http.get(FEED, params={"limit": 4})).json()
        late = envelope(TradeExecuted, trade(7), T0 + timedelta(hours=1))
        await redis_client.xadd(TradeExecuted.stream_key, {keys.ENVELOPE_FIELD: late})
        await poll_until(lambda: drained(redis_client), "late trade handled", timeout=5)
        rest = await http.get(FEED, params={"limit": 100, "cursor": first["next_cursor"]})
        assert first["items"] + rest.json()["items"] == items  # no repeat, no gap
        newest = (await http.get(FEED, params={"limit": 1})).json()["items"][0]
        assert newest["data"]["trade_number"] == 7


async def test_feed_inputs_are_validated_and_tokens_checked(
    redis_server: Any, tmp_path: Path, issuer: TokenIssuer
) -> None:
    async with social(redis_server.url, tmp_path, issuer) as http:
        assert (await http.get(FEED)).status_code == 200
        signed = {"Authorization": f"Bearer {issuer.token('u-bob', 'bob')}"}
        assert (await http.get(FEED, headers=signed)).status_code == 200
        for header in ("Bearer nope", "Bearer", "Basic dXNlcjpwYXNz"):
            bad = await http.get(FEED, headers={"Authorization": header})
            assert bad.status_code == 401, header
            assert bad.headers["content-type"] == "application/problem+json"

        not_issued = [
            base64.urlsafe_b64encode(b"123.not-an-id").decode().rstrip("="),
            base64.urlsafe_b64encode(b"-5.0190b7a4-0000-7000-8000-000000000000").decode(),
            base64.urlsafe_b64encode(b"99999999999999999.0190b7a4-0000-7000-8000-000000000000")
            .decode()
            .rstrip("="),
            "abc",
            "A" * 97,
            "@@@",
            "a b",
        ]
        for cursor in not_issued:
            bad = await http.get(FEED, params={"cursor": cursor})
            assert bad.status_code == 422, cursor
            assert bad.headers["content-type"] == "application/problem+json"
            assert bad.json()["errors"][0]["loc"] == ["query", "cursor"]
        for params in (
            {"limit": "0"},
            {"limit": "101"},
            {"limit": "many"},
            {"user": ""},
            {"user": "a b"},
            {"user": "x" * 65},
            {"user": "alice'; --"},
        ):
            bad = await http.get(FEED, params=params)
            assert bad.status_code == 422, params
            assert bad.headers["content-type"] == "application/problem+json"


async def test_feeds_keep_the_newest_entries(
    redis_server: Any, redis_client: aioredis.Redis, tmp_path: Path, issuer: TokenIssuer
) -> None:
    publisher = Publisher(
        redis_client, producer="trading", settings=BusSettings(), registry=CollectorRegistry()
    )
    await publisher.publish_batch([(TradeExecuted, trade(n)) for n in range(1, 16)])
    async with social(
        redis_server.url, tmp_path, issuer, global_feed_size=10, user_feed_size=10
    ) as http:
        await poll_until(lambda: drained(redis_client), "trades handled", timeout=5)
        items = [i for p in await all_pages(http, 4) for i in p]
        assert len(items) == 10
        assert len(await redis_client.zrange("astra:social:feed:user:u-alice", 0, -1)) == 10


# --- the cross-domain workflow: trading -> gamification -> nft -> social ---------------


async def test_trades_become_xp_achievements_nfts_and_feed_entries_once(
    redis_server: Any, redis_client: aioredis.Redis, tmp_path: Path, issuer: TokenIssuer
) -> None:
    url = redis_server.url
    async with AsyncExitStack() as stack:
        gam = await stack.enter_async_context(
            serve(
                gamification_app.create_app,
                gamification_config.Settings(**common(url, tmp_path, issuer, "gamification")),
            )
        )
        nft = await stack.enter_async_context(
            serve(nft_app.create_app, nft_config.Settings(**common(url, tmp_path, issuer, "nft")))
        )
        feed = await stack.enter_async_context(social(url, tmp_path, issuer))

        trades = [
            trade(n, side="sell" if n == 2 else "buy", realized_pnl=Decimal(3 if n == 2 else 0))
            for n in range(1, 11)
        ]
        bodies = [envelope(TradeExecuted, t, t.executed_at) for t in trades]
        for body in [*bodies, bodies[-1]]:  # trade 10 published twice (an outbox retry)
            await redis_client.xadd(TradeExecuted.stream_key, {keys.ENVELOPE_FIELD: body})

        async def complete() -> list[dict[str, Any]] | None:
            response = await feed.get(FEED, params={"user": "alice", "limit": 100})
            items: list[dict[str, Any]] = response.json()["items"]
            return items if [i["kind"] for i in items].count("nft") >= 3 else None

        items = await poll_until(complete, "three NFTs in alice's feed", timeout=15)
        await poll_until(lambda: drained(redis_client), "feed settled", timeout=5)
        items = (await feed.get(FEED, params={"user": "alice", "limit": 100})).json()["items"]
        kinds = [i["kind"] for i in items]
        assert len({i["id"] for i in items}) == len(items)
        assert kinds.count("trade") == 10
        assert sorted(i["data"]["achievement"] for i in items if i["kind"] == "achievement") == [
            "first_profitable_sell",
            "first_trade",
            "ten_trades",
        ]
        assert sorted(i["data"]["rarity"] for i in items if i["kind"] == "nft") == [
            "common",
            "rare",
            "rare",
        ]
        assert sorted(i["data"]["level"] for i in items if i["kind"] == "level_up") == [2, 3, 4]

        alice = {"Authorization": f"Bearer {issuer.token('u-alice', 'alice')}"}
        profile = (await gam.get("/api/v1/gamification/profile", headers=alice)).json()
        assert (profile["xp"], profile["level"]) == (10 * 10 + 25, 4)
        collection = (await nft.get("/api/v1/nft/collection", headers=alice)).json()
        assert len(collection) == 3
