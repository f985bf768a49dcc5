"""The trading service under real uvicorn, a real redis-server, and SQLite / PostgreSQL.

Most tests freeze the market (`market_tick_ms=0`), so every fill is at the
opening price and the expected cash is plain arithmetic; the exact-math test
lets prices move every millisecond and computes its expectations from the
prices the fills report.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import create_async_engine

from backbone.bus.envelope import Envelope, decode
from contracts.trading import PositionUpdated, TradeExecuted
from services.trading.app import create_app
from services.trading.config import Settings
from services.trading.market import INSTRUMENTS, Market
from services.trading.models import accounts, orders, outbox, positions
from stack.netutil import free_port
from stack.redis_server import RedisServer
from tests.support.asgi_server import service_client
from tests.support.poll import poll_until
from tests.support.settings import FAST_BUS, FAST_REGISTRY
from tests.support.tokens import TokenIssuer

pytestmark = pytest.mark.integration

ORDERS = "/api/v1/trading/orders"
PORTFOLIO = "/api/v1/trading/portfolio"
MARKETS = "/api/v1/trading/markets"
OPENING = {i.symbol: i.opening_price for i in INSTRUMENTS}
SIX = Decimal("0.000001")


def make_settings(
    redis_url: str, tmp_path: Path, issuer: TokenIssuer, database_url: str = "", **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "instance_id": "trading-1",
        "port": free_port(),
        "redis_url": redis_url,
        "run_dir": tmp_path,
        "database_url": database_url,
        "jwks_url": issuer.jwks_url,
        "market_tick_ms": 0,
        "bus": FAST_BUS,
        "registry": FAST_REGISTRY,
    }
    return Settings(**{**values, **overrides})


@asynccontextmanager
async def trading_service(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with service_client(create_app, settings) as http:
        yield http


def auth(issuer: TokenIssuer, user: str, name: str = "", **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.token(user, name or user, **claims)}"}


async def order(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    symbol: str,
    side: str,
    quantity: str,
    key: str | None = None,
) -> httpx.Response:
    if key is not None:
        headers = {**headers, "Idempotency-Key": key}
    body = {"symbol": symbol, "side": side, "quantity": quantity}
    return await http.post(ORDERS, json=body, headers=headers)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def stream(redis_url: str, key: str) -> list[Envelope]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        entries = await client.xrange(key)
    finally:
        await client.aclose()
    return [decode(fields[b"envelope"]) for _, fields in entries]


async def wait_events(redis_url: str, key: str, n: int) -> list[Envelope]:
    async def check() -> list[Envelope] | None:
        events = await stream(redis_url, key)
        return events if len(events) >= n else None

    events = await poll_until(check, f"{n} events on {key}", timeout=5)
    assert len(events) == n, [e.data for e in events]
    return events


async def counts(database_url: str) -> dict[str, int]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            result = {}
            table: Table
            for table in (accounts, positions, orders, outbox):
                count = await conn.execute(select(func.count()).select_from(table))
                result[table.name] = int(count.scalar_one())
            return result
    finally:
        await engine.dispose()


async def test_fills_are_exact_and_reach_the_streams(
    redis_server: RedisServer, tmp_path: Path, database_url: str, issuer: TokenIssuer
) -> None:
    # Prices move every millisecond: expectations come from the prices of the fills.
    settings = make_settings(
        redis_server.url, tmp_path, issuer, database_url, market_tick_ms=1, market_seed=7
    )
    alice = auth(issuer, "u-alice", "alice")
    async with trading_service(settings) as http:
        buy1 = await order(http, alice, "AAPL", "buy", "3")
        assert buy1.status_code == 201, buy1.text
        b1 = buy1.json()
        assert b1["symbol"] == "AAPL"
        assert b1["side"] == "buy"
        assert b1["status"] == "filled"
        assert buy1.headers["location"] == f"{ORDERS}/{b1['order_id']}"
        p1 = Decimal(b1["price"])
        assert p1 == p1.quantize(Decimal("0.01"))
        assert p1 > 0
        assert Decimal(b1["quantity"]) == 3
        assert Decimal(b1["notional"]) == 3 * p1

        b2 = (await order(http, alice, "AAPL", "buy", "0.5")).json()
        p2 = Decimal(b2["price"])
        s1 = (await order(http, alice, "AAPL", "sell", "1")).json()
        p3 = Decimal(s1["price"])

        average = ((3 * p1 + Decimal("0.5") * p2) / Decimal("3.5")).quantize(SIX, ROUND_HALF_EVEN)
        cash = Decimal("10000") - 3 * p1 - Decimal("0.5") * p2 + p3
        realized = ((p3 - average) * 1).quantize(SIX, ROUND_HALF_EVEN)

        book = (await http.get(PORTFOLIO, headers=alice)).json()
        assert Decimal(book["cash"]) == cash  # exact: no float anywhere
        (pos,) = book["positions"]
        assert pos["symbol"] == "AAPL"
        assert Decimal(pos["quantity"]) == Decimal("2.5")
        assert Decimal(pos["average_price"]) == average
        price_now = Decimal(pos["market_value"]) / Decimal("2.5")
        assert price_now == price_now.quantize(Decimal("0.01"))
        assert Decimal(pos["unrealized_pnl"]) == ((price_now - average) * Decimal("2.5")).quantize(
            SIX, ROUND_HALF_EVEN
        )
        assert Decimal(book["equity"]) == cash + Decimal(pos["market_value"])
        assert all(isinstance(book[k], str) for k in ("cash", "equity"))

        trades = await wait_events(redis_server.url, TradeExecuted.stream_key, 3)
        assert [t.data["trade_number"] for t in trades] == [1, 2, 3]
        assert [t.data["order_id"] for t in trades] == [
            b1["order_id"],
            b2["order_id"],
            s1["order_id"],
        ]
        sell = trades[2].data
        assert sell["user_id"] == "u-alice"
        assert sell["username"] == "alice"
        assert sell["side"] == "sell"
        assert Decimal(sell["price"]) == p3
        assert Decimal(sell["quantity"]) == 1
        assert Decimal(sell["notional"]) == p3
        assert Decimal(sell["realized_pnl"]) == realized
        assert Decimal(trades[0].data["realized_pnl"]) == 0
        assert all(isinstance(t.data["price"], str) for t in trades)  # decimals, not floats
        updates = await wait_events(redis_server.url, PositionUpdated.stream_key, 3)
        last = updates[-1].data
        assert Decimal(last["quantity"]) == Decimal("2.5")
        assert Decimal(last["average_price"]) == average
        assert Decimal(last["cash"]) == cash

        # Selling the rest closes the position.
        closed = await order(http, alice, "AAPL", "sell", "2.5")
        assert closed.status_code == 201
        book = (await http.get(PORTFOLIO, headers=alice)).json()
        assert book["positions"] == []
        assert Decimal(book["cash"]) == cash + Decimal("2.5") * Decimal(closed.json()["price"])
        assert book["cash"] == book["equity"]
        closing = (await wait_events(redis_server.url, PositionUpdated.stream_key, 4))[-1].data
        assert Decimal(closing["quantity"]) == 0


async def test_orders_are_listed_newest_first_and_private(
    redis_server: RedisServer, tmp_path: Path, database_url: str, issuer: TokenIssuer
) -> None:
    settings = make_settings(redis_server.url, tmp_path, issuer, database_url)
    alice, bob = auth(issuer, "u-alice", "alice"), auth(issuer, "u-bob", "bob")
    async with trading_service(settings) as http:
        placed = []
        for symbol, qty in (("AAPL", "1"), ("MSFT", "0.25"), ("NVDA", "0.0001")):
            response = await order(http, alice, symbol, "buy", qty)
            assert response.status_code == 201, response.text
            placed.append(response.json())
        assert placed[2]["price"] == "120.00"
        assert placed[2]["notional"] == "0.012"  # 0.0001 x 120.00, not rounded to cents

        listed = (await http.get(ORDERS, headers=alice)).json()
        assert [o["order_id"] for o in listed] == [o["order_id"] for o in reversed(placed)]
        assert listed[0] == placed[2]
        two = (await http.get(ORDERS, params={"limit": 2}, headers=alice)).json()
        assert [o["order_id"] for o in two] == [placed[2]["order_id"], placed[1]["order_id"]]
        # The next page starts after the last one listed; a cursor not yours is a 404.
        rest = await http.get(
            ORDERS, params={"limit": 2, "before": two[-1]["order_id"]}, headers=alice
        )
        assert [o["order_id"] for o in rest.json()] == [placed[0]["order_id"]]
        assert_problem(
            await http.get(ORDERS, params={"before": placed[0]["order_id"]}, headers=bob), 404
        )
        assert_problem(await http.get(ORDERS, params={"before": "not-an-id"}, headers=alice), 422)
        one = await http.get(f"{ORDERS}/{placed[0]['order_id']}", headers=alice)
        assert one.json() == placed[0]

        book = (await http.get(PORTFOLIO, headers=alice)).json()
        assert book["cash"] == "9704.988"  # 10000 - 190 - 105 - 0.012
        assert [p["symbol"] for p in book["positions"]] == ["AAPL", "MSFT", "NVDA"]
        assert book["positions"][1] == {
            "symbol": "MSFT",
            "quantity": "0.25",
            "average_price": "420.00",
            "market_value": "105.00",
            "unrealized_pnl": "0.00",
        }
        assert book["equity"] == "10000.00"

        # Bob sees none of it: no listing, no portfolio, and Alice's order "does not exist".
        assert (await http.get(ORDERS, headers=bob)).json() == []
        bobs = (await http.get(PORTFOLIO, headers=bob)).json()
        assert bobs == {"cash": "10000.00", "positions": [], "equity": "10000.00"}
        hidden = assert_problem(
            await http.get(f"{ORDERS}/{placed[0]['order_id']}", headers=bob), 404
        )
        unknown = assert_problem(await http.get(f"{ORDERS}/{uuid.uuid4()}", headers=bob), 404)
        assert hidden["detail"] == unknown["detail"]
    assert (await counts(database_url))["trading_accounts"] == 1  # reads create no account


async def test_rejected_orders_write_nothing(
    redis_server: RedisServer, tmp_path: Path, database_url: str, issuer: TokenIssuer
) -> None:
    settings = make_settings(redis_server.url, tmp_path, issuer, database_url)
    carol = auth(issuer, "u-carol", "carol")
    async with trading_service(settings) as http:
        broke = assert_problem(await order(http, carol, "TSLA", "buy", "40.0001"), 422)
        assert broke["type"].endswith("/insufficient-funds")
        assert broke["required"] == "10000.025"
        assert broke["available"] == "10000.00"
        short = assert_problem(await order(http, carol, "AAPL", "sell", "1"), 422)
        assert short["type"].endswith("/insufficient-position")
        assert short["held"] == "0.00"
        assert await counts(database_url) == {
            "trading_accounts": 0,  # not even the lazily created account
            "trading_positions": 0,
            "trading_orders": 0,
            "astra_outbox": 0,
        }

        assert (await order(http, carol, "TSLA", "buy", "40")).status_code == 201  # exactly all
        assert_problem(await order(http, carol, "AAPL", "buy", "0.0001"), 422)
        oversell = assert_problem(await order(http, carol, "TSLA", "sell", "40.0001"), 422)
        assert oversell["held"] == "40.00"
        assert_problem(await order(http, carol, "MSFT", "sell", "1"), 422)
        book = (await http.get(PORTFOLIO, headers=carol)).json()
        assert book["cash"] == "0.00"
        assert book["positions"][0]["quantity"] == "40.00"
        await wait_events(redis_server.url, TradeExecuted.stream_key, 1)
    assert await counts(database_url) == {
        "trading_accounts": 1,
        "trading_positions": 1,
        "trading_orders": 1,
        "astra_outbox": 2,
    }


async def test_idempotent_retry_executes_once(
    redis_server: RedisServer, tmp_path: Path, database_url: str, issuer: TokenIssuer
) -> None:
    settings = make_settings(redis_server.url, tmp_path, issuer, database_url)
    dave, erin = auth(issuer, "u-dave", "dave"), auth(issuer, "u-erin", "erin")
    async with trading_service(settings) as http:
        first = await order(http, dave, "AMZN", "buy", "2", key="k-1")
        assert first.status_code == 201
        assert "idempotent-replayed" not in first.headers
        retry = await order(http, dave, "AMZN", "buy", "2.0000", key="k-1")  # same order
        assert retry.status_code == 201
        assert retry.headers["idempotent-replayed"] == "true"
        assert retry.json() == first.json()

        reused = assert_problem(await order(http, dave, "AMZN", "buy", "3", key="k-1"), 422)
        assert reused["type"].endswith("/idempotency-key-reused")
        assert_problem(await order(http, dave, "AMZN", "sell", "2", key="k-1"), 422)

        # Racing retries of one request: one fill, every caller gets it.
        racing = await asyncio.gather(
            *(order(http, dave, "GOOGL", "buy", "1", key="k-2") for _ in range(8))
        )
        assert {r.status_code for r in racing} == {201}
        assert len({r.json()["order_id"] for r in racing}) == 1

        # Keys are per user: Erin's k-1 is her own order.
        theirs = await order(http, erin, "AMZN", "buy", "2", key="k-1")
        assert theirs.status_code == 201
        assert theirs.json()["order_id"] != first.json()["order_id"]

        trades = await wait_events(redis_server.url, TradeExecuted.stream_key, 3)
        assert sorted(t.data["user_id"] for t in trades) == ["u-dave", "u-dave", "u-erin"]
        book = (await http.get(PORTFOLIO, headers=dave)).json()
        assert book["cash"] == "9470.00"  # 10000 - 2 x 180 - 1 x 170
    assert (await counts(database_url))["trading_orders"] == 3


async def test_concurrent_buys_never_overspend(
    redis_server: RedisServer, tmp_path: Path, database_url: str, issuer: TokenIssuer
) -> None:
    # Two instances on one database: in-process locks alone could not keep this safe.
    first = make_settings(redis_server.url, tmp_path, issuer, database_url)
    second = make_settings(
        redis_server.url, tmp_path, issuer, database_url, instance_id="trading-2", port=free_port()
    )
    frank = auth(issuer, "u-frank", "frank")
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(trading_service(first))
        two = await stack.enter_async_context(trading_service(second))
        # 7 AAPL at 190.00 = 1330.00: cash for 7 of the 20 (9310.00), 690.00 left.
        responses = await asyncio.gather(
            *(order((one, two)[i % 2], frank, "AAPL", "buy", "7") for i in range(20))
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] * 7 + [422] * 13, [r.text for r in responses]
        for r in responses:
            if r.status_code == 422:
                assert r.json()["type"].endswith("/insufficient-funds")
        book = (await one.get(PORTFOLIO, headers=frank)).json()
        assert book["cash"] == "690.00"
        assert book["positions"][0]["quantity"] == "49.00"
        trades = await wait_events(redis_server.url, TradeExecuted.stream_key, 7)
        assert sorted(t.data["trade_number"] for t in trades) == list(range(1, 8))
        cash_after = [
            Decimal(e.data["cash"])
            for e in await stream(redis_server.url, PositionUpdated.stream_key)
        ]
        assert min(cash_after) == Decimal("690")
        assert all(c >= 0 for c in cash_after)
    assert (await counts(database_url))["trading_orders"] == 7


BAD_ORDERS: list[Any] = [
    {"symbol": "AAPL", "side": "buy", "quantity": 0},
    {"symbol": "AAPL", "side": "buy", "quantity": "0"},
    {"symbol": "AAPL", "side": "buy", "quantity": "-0"},
    {"symbol": "AAPL", "side": "buy", "quantity": -1},
    {"symbol": "AAPL", "side": "buy", "quantity": "NaN"},
    {"symbol": "AAPL", "side": "buy", "quantity": "Infinity"},
    {"symbol": "AAPL", "side": "buy", "quantity": "-Infinity"},
    {"symbol": "AAPL", "side": "buy", "quantity": "1e400"},
    {"symbol": "AAPL", "side": "buy", "quantity": "1e-400"},
    {"symbol": "AAPL", "side": "buy", "quantity": "0.00001"},  # 5 places
    {"symbol": "AAPL", "side": "buy", "quantity": "1000000.0001"},  # above the max
    {"symbol": "AAPL", "side": "buy", "quantity": "1" * 1_000_000},  # 1 MB of digits
    {"symbol": "AAPL", "side": "buy", "quantity": "one"},
    {"symbol": "AAPL", "side": "buy", "quantity": True},
    {"symbol": "AAPL", "side": "buy", "quantity": None},
    {"symbol": "AAPL", "side": "buy", "quantity": [1]},
    {"symbol": "AAPL", "side": "buy"},
    {"symbol": "XXXX", "side": "buy", "quantity": "1"},
    {"symbol": "aapl", "side": "buy", "quantity": "1"},
    {"symbol": "ÄAPL", "side": "buy", "quantity": "1"},
    {"symbol": "A" * 1_000_000, "side": "buy", "quantity": "1"},
    {"symbol": "", "side": "buy", "quantity": "1"},
    {"symbol": "AAPL", "side": "BUY", "quantity": "1"},
    {"symbol": "AAPL", "side": "short", "quantity": "1"},
    {"symbol": "AAPL", "side": "buy", "quantity": "1", "price": "0.01"},  # unknown field
    {"symbol": "AAPL", "side": "buy", "quantity": "1", "user_id": "u-someone-else"},
    ["AAPL", "buy", "1"],
    "AAPL",
    None,
]
RAW_BAD_BODIES = [b"{not json", b"", b'{"symbol": "AAPL"', b"\xff\xfe", b"NaN", b"[]"]


async def test_bad_input_is_a_clean_4xx_and_writes_nothing(
    redis_server: RedisServer, tmp_path: Path, issuer: TokenIssuer
) -> None:
    settings = make_settings(redis_server.url, tmp_path, issuer)
    gina = auth(issuer, "u-gina", "gina")
    async with trading_service(settings) as http:
        for body in BAD_ORDERS:
            response = await http.post(ORDERS, json=body, headers=gina)
            problem = assert_problem(response, 422)
            assert problem["errors"], body
            assert len(response.content) < 10_000  # the input is never echoed back
        for raw in RAW_BAD_BODIES:
            response = await http.post(
                ORDERS, content=raw, headers={**gina, "Content-Type": "application/json"}
            )
            assert_problem(response, 422)
        # Numbers in JSON (not strings) that no float can hold.
        for raw_quantity in (b"1e400", b"-0", b"0.00001", b"NaN", b"Infinity", b"-1e-400"):
            content = b'{"symbol": "AAPL", "side": "buy", "quantity": ' + raw_quantity + b"}"
            response = await http.post(
                ORDERS, content=content, headers={**gina, "Content-Type": "application/json"}
            )
            assert_problem(response, 422)
        # 5000 digits exceed Python's int-parsing limit inside json.loads: FastAPI raises
        # its 400 "error parsing the body", which the kernel answers as 422 like any
        # other malformed body: a problem document, and no write.
        content = b'{"symbol": "AAPL", "side": "buy", "quantity": ' + b"1" * 5000 + b"}"
        response = await http.post(
            ORDERS, content=content, headers={**gina, "Content-Type": "application/json"}
        )
        assert_problem(response, 422)
        for key in ("x" * 129, "with space", "ключ".encode(), ""):
            response = await http.post(
                ORDERS,
                json={"symbol": "AAPL", "side": "buy", "quantity": "1"},
                headers={**gina, "Idempotency-Key": key},
            )
            assert_problem(response, 422)
        for limit in ("0", "101", "-1", "ten", "1e3"):
            assert_problem(await http.get(ORDERS, params={"limit": limit}, headers=gina), 422)
        assert_problem(await http.get(f"{ORDERS}/not-a-uuid", headers=gina), 422)
        assert_problem(await http.get(f"{ORDERS}/{'9' * 10_000}", headers=gina), 422)
    assert await counts(settings.database_url) == {
        "trading_accounts": 0,
        "trading_positions": 0,
        "trading_orders": 0,
        "astra_outbox": 0,
    }


async def test_identity_comes_only_from_a_valid_token(
    redis_server: RedisServer, tmp_path: Path, issuer: TokenIssuer
) -> None:
    settings = make_settings(redis_server.url, tmp_path, issuer)
    body = {"symbol": "AAPL", "side": "buy", "quantity": "1"}
    async with trading_service(settings) as http, TokenIssuer() as stranger:
        # Public, but a token that is sent must be valid.
        markets = await http.get(MARKETS)
        assert markets.status_code == 200
        assert [m["symbol"] for m in markets.json()] == sorted(OPENING)
        assert {m["symbol"]: Decimal(m["price"]) for m in markets.json()} == OPENING
        assert (await http.get(MARKETS, headers=auth(issuer, "u-hank"))).status_code == 200
        assert_problem(await http.get(MARKETS, headers=auth(stranger, "u-hank")), 401)
        assert_problem(await http.get(MARKETS, headers={"Authorization": "Bearer nope"}), 401)

        forged = {"X-User-ID": "u-hank", "X-Username": "hank"}
        order_id = str(uuid.uuid4())
        for method, path, kwargs in (
            ("POST", ORDERS, {"json": body}),
            ("GET", ORDERS, {}),
            ("GET", f"{ORDERS}/{order_id}", {}),
            ("GET", PORTFOLIO, {}),
        ):
            for headers in (
                forged,
                {**forged, **auth(stranger, "u-hank")},  # a token from another issuer
                {**forged, **auth(issuer, "u-hank", ttl=-60)},  # expired
                {**forged, **auth(issuer, "u-hank", aud="elsewhere")},
                {**forged, "Authorization": "Basic dTpw"},
            ):
                response = await http.request(method, path, headers=headers, **kwargs)
                assert_problem(response, 401)
                assert "Bearer" in response.headers["www-authenticate"]
        # An absurd subject from the real issuer is refused, not stored.
        huge = {"Authorization": f"Bearer {issuer.token('u' * 500, 'hank')}"}
        assert_problem(await http.post(ORDERS, json=body, headers=huge), 401)
    assert (await counts(settings.database_url))["trading_orders"] == 0


def test_market_is_a_deterministic_seeded_walk() -> None:
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    a = Market(42, tick_ms=1000, epoch=epoch)
    b = Market(42, tick_ms=1000, epoch=epoch)
    other = Market(43, tick_ms=1000, epoch=epoch)
    assert len(a.symbols) >= 5
    ticks = [0, 1, 2, 63, 64, 65, 4095, 4096, 10**6, 10**8 + 7]
    for symbol in a.symbols:
        path = [a.price(symbol, t) for t in ticks]
        assert path[0] == OPENING[symbol]  # tick 0 is the opening price
        assert path == [b.price(symbol, t) for t in reversed(ticks)][::-1]  # any order, same walk
        assert all(p > 0 and p == p.quantize(Decimal("0.01")) for p in path)
    assert [a.price("AAPL", t) for t in range(1, 200)] != [
        other.price("AAPL", t) for t in range(1, 200)
    ]

    # One step per tick, small steps: a walk, not noise.
    walk = [a.price("MSFT", t) for t in range(5000, 5300)]
    assert len(set(walk)) > 10
    assert max(abs(y - x) / x for x, y in itertools.pairwise(walk)) < Decimal("0.01")

    # The tick follows the clock from the epoch; a frozen market stays at the opening.
    now = [epoch.timestamp() + 12.5]
    clocked = Market(42, tick_ms=1000, epoch=epoch, clock=lambda: now[0])
    assert clocked.tick() == 12
    assert clocked.quote("TSLA") == a.price("TSLA", 12)
    now[0] += 1
    assert clocked.tick() == 13
    frozen = Market(42, tick_ms=0, epoch=epoch, clock=lambda: now[0])
    assert frozen.quotes() == OPENING


async def test_instances_with_one_seed_quote_the_same_prices(
    redis_server: RedisServer, tmp_path: Path, issuer: TokenIssuer
) -> None:
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    settings = make_settings(
        redis_server.url, tmp_path, issuer, market_tick_ms=60_000, market_seed=1234
    )
    local = Market(1234, tick_ms=60_000, epoch=epoch)
    async with trading_service(settings) as http:

        async def same() -> bool:
            served = {m["symbol"]: Decimal(m["price"]) for m in (await http.get(MARKETS)).json()}
            return served == local.quotes()  # retried if a minute boundary fell in between

        await poll_until(same, "the service's prices equal a local Market's", timeout=5)
        assert local.quotes() != OPENING  # 10+ months of minutes after the epoch
