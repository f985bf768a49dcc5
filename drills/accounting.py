"""Event accounting: every order the drill's traders placed, followed to each effect,
read through the public API and Redis, never from the drill's own counters.

    orders (trading API, per account)
      └─ trade_executed events (Redis XRANGE, one distinct event per order)
           ├─ XP (gamification API: 10 a trade, +25 a profitable sell; rules.py)
           ├─ feed entries of kind "trade" (social API, the user's feed)
           └─ NFTs (nft API: one per achievement the profile shows)

An order without its event, XP short of what the events earn, a missing feed entry or
NFT is *lost*; a second distinct event for one order, XP beyond it, an extra entry or
NFT, or one request (one correlation ID on its events) that became two orders — a
write retried without its idempotency — is *duplicated*. The accounts are the
drill's pool, fresh for the run, so every count starts at zero. `settle` polls until
the counts stop moving (the bus drained) or its deadline passes, so a slow pipeline
reads as lost, not as a pass.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, cast

import httpx
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from backbone import keys
from backbone.bus.envelope import decode_typed
from backbone.errors import EnvelopeError
from contracts.trading import TradeExecuted, TradeExecutedData

XP_PER_TRADE, XP_PROFITABLE_SELL_BONUS = 10, 25  # services/gamification/rules.py, public
ORDERS_LIMIT = 100  # GET /api/v1/trading/orders pages at most this many


@dataclass
class Account:
    username: str
    token: str


@dataclass
class Count:
    orders_accepted: int = 0
    trade_events: int = 0
    xp_expected: int = 0
    xp_awarded: int = 0
    feed_entries: int = 0
    achievements: int = 0
    nfts_minted: int = 0
    lost: int = 0
    duplicated: int = 0
    not_events: int = 0  # entries on the trade stream that are no event (dead-lettered)
    # A trim drill's: the events whose XP was taken away on purpose, and that XP.
    lost_by_design: int = 0
    xp_lost_by_design: int = 0
    incomplete: list[str] = field(default_factory=list)  # what could not be read
    problems: list[str] = field(default_factory=list)  # per account, the first few

    @property
    def exact(self) -> bool:
        return not self.lost and not self.duplicated and not self.incomplete

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "exact": self.exact}


TradeIndex = dict[str, dict[str, set[str]]]  # user_id -> order_id -> distinct event ids


TradeEvents = tuple[TradeIndex, dict[str, Decimal], dict[str, set[str]], int]


# (entry id, fields) as redis-py returns them: bytes, or None for a deleted entry.
RawEntry = tuple[Any, Any]


def _decoded(fields: Any) -> tuple[str, TradeExecutedData, str] | None:
    """(event id, data, correlation id), or None for an entry no consumer could apply."""
    raw = (fields or {}).get(keys.ENVELOPE_FIELD.encode())
    try:
        envelope, decoded = decode_typed(TradeExecuted, raw or b"")
    except EnvelopeError:
        return None
    return envelope.event_id, cast(TradeExecutedData, decoded), envelope.correlation_id


def event_ids(entries: Iterable[RawEntry]) -> list[str]:
    """The trade events' ids among `entries` (a trim drill's lost batch)."""
    return [d[0] for _, fields in entries if (d := _decoded(fields)) is not None]


async def _trade_events(redis: Redis, archived: Sequence[RawEntry] = ()) -> TradeEvents:
    """Every trade_executed event on the stream: by user and order, each event's
    realised profit (what its XP depends on), and the orders of each request (its
    correlation ID): one request that became two orders was executed twice. Entries
    the consumers' own decoder refuses (a poison drill's) are no trades: counted apart."""
    found: TradeIndex = defaultdict(lambda: defaultdict(set))
    profit: dict[str, Decimal] = {}
    by_request: dict[str, set[str]] = defaultdict(set)
    not_events = 0

    def index(entries: Iterable[RawEntry]) -> None:
        nonlocal not_events
        for _entry_id, fields in entries:
            decoded = _decoded(fields)
            if decoded is None:
                not_events += 1
                continue
            event_id, data, correlation_id = decoded
            found[data.user_id][data.order_id].add(event_id)
            profit[event_id] = data.realized_pnl
            by_request[correlation_id].add(data.order_id)

    index(archived)  # what a trim drill removed from the stream, kept before it did
    start = "-"
    while True:
        batch = await redis.xrange(TradeExecuted.stream_key, min=start, max="+", count=2000)
        if not batch:
            return found, profit, by_request, not_events
        index(batch)
        last = batch[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else str(last))


async def count(
    gateway: str,
    redis_url: str,
    accounts: Sequence[Account | Mapping[str, str]],
    archived: Sequence[RawEntry] = (),
    lost_by_design: frozenset[str] = frozenset(),
    *,
    cluster: bool = False,
) -> Count:
    """One reading of every account's chain, summed. `archived`: trade entries no longer
    on the stream (a trim drill's); `lost_by_design`: events whose XP must be missing.
    `cluster`: `redis_url` is one node of a Redis Cluster."""
    result = Count()
    redis = (
        cast(Redis, RedisCluster.from_url(redis_url, socket_timeout=5))
        if cluster
        else Redis.from_url(redis_url, socket_timeout=5)
    )
    events: TradeIndex = {}
    pnl: dict[str, Decimal] = {}
    by_request: dict[str, set[str]] = {}
    try:
        events, pnl, by_request, result.not_events = await _trade_events(redis, archived)
    except (RedisError, OSError, ValueError) as e:  # reported as incomplete, not raised
        result.incomplete.append(f"trade stream: {e}")
    finally:
        await redis.aclose()
    # Requests are judged over the whole stream: any request that became two orders.
    for request, orders in by_request.items():
        if len(orders) > 1:
            result.duplicated += len(orders) - 1
            if len(result.problems) < 20:
                result.problems.append(f"request {request} became {len(orders)} orders")
    async with httpx.AsyncClient(base_url=gateway, timeout=15.0) as http:
        for raw in accounts:
            account = raw if isinstance(raw, Account) else Account(raw["username"], raw["token"])
            await _account(http, account, events, pnl, result, lost_by_design)
    return result


async def _get(http: httpx.AsyncClient, path: str, token: str) -> Any:
    response = await http.get(
        path, headers={"Authorization": f"Bearer {token}", "X-Correlation-ID": "drill-accounting"}
    )
    response.raise_for_status()
    return response.json()


async def _account(
    http: httpx.AsyncClient,
    account: Account,
    events: Mapping[str, Mapping[str, set[str]]],
    pnl: Mapping[str, Decimal],
    result: Count,
    lost_by_design: frozenset[str] = frozenset(),
) -> None:
    def problem(text: str) -> None:
        if len(result.problems) < 20:
            result.problems.append(f"{account.username}: {text}")

    try:
        orders = await _orders(http, account)
        profile = await _get(http, "/api/v1/gamification/profile", account.token)
        nfts = await _get(http, "/api/v1/nft/collection?limit=100", account.token)
        feed = await _feed(http, account)
    except (httpx.HTTPError, ValueError) as e:
        result.incomplete.append(f"{account.username}: {e}")
        return
    user_id = str(profile["user_id"])
    mine = events.get(user_id, {})
    order_ids = {str(o["order_id"]) for o in orders}
    result.orders_accepted += len(order_ids)
    for order_id in order_ids:
        n = len(mine.get(order_id, ()))
        result.trade_events += min(n, 1)
        if n == 0:
            result.lost += 1
            problem(f"order {order_id} has no trade_executed event")
        elif n > 1:
            result.duplicated += n - 1
            problem(f"order {order_id} has {n} distinct trade events")
    expected = 0
    for order_id in order_ids:
        for event_id in sorted(mine.get(order_id, ()))[:1]:
            profit = pnl.get(event_id, Decimal(0)) > 0
            earned = XP_PER_TRADE + (XP_PROFITABLE_SELL_BONUS if profit else 0)
            if event_id in lost_by_design:  # its XP must be missing, and nothing else
                result.lost_by_design += 1
                result.xp_lost_by_design += earned
            else:
                expected += earned
    xp = int(profile["xp"])
    result.xp_expected += expected
    result.xp_awarded += xp
    if xp < expected:
        result.lost += 1
        problem(f"XP {xp} < {expected} the trades earn")
    elif xp > expected:
        result.duplicated += 1
        problem(f"XP {xp} > {expected} the trades earn")
    trades_in_feed = [e for e in feed if e["kind"] == "trade"]
    ids = [e["id"] for e in trades_in_feed]
    result.feed_entries += len(set(ids))
    traded = {e for o in order_ids for e in sorted(mine.get(o, ()))[:1]}
    missing = traded - set(ids)
    if missing:
        result.lost += len(missing)
        problem(f"{len(missing)} trades missing from the feed")
    extra = len(ids) - len(set(ids))
    if extra:
        result.duplicated += extra
        problem(f"{extra} duplicate feed entries")
    achievements = len(profile.get("achievements", []))
    result.achievements += achievements
    result.nfts_minted += len(nfts)
    if len(nfts) < achievements:
        result.lost += achievements - len(nfts)
        problem(f"{len(nfts)} NFTs for {achievements} achievements")
    elif len(nfts) > achievements:
        result.duplicated += len(nfts) - achievements
        problem(f"{len(nfts)} NFTs for {achievements} achievements")


async def _orders(http: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
    """Every order of the account, page by page (`before` the last one of a page)."""
    found: list[dict[str, Any]] = []
    path = f"/api/v1/trading/orders?limit={ORDERS_LIMIT}"
    while True:
        page = await _get(http, path, account.token)
        found += page
        if len(page) < ORDERS_LIMIT:
            return found
        path = f"/api/v1/trading/orders?limit={ORDERS_LIMIT}&before={page[-1]['order_id']}"


async def _feed(http: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    path = f"/api/v1/social/feed?user={account.username}&limit=100"
    for _ in range(50):  # 5,000 entries at most: far beyond a drill's account
        page = await _get(http, path, account.token)
        entries += page["items"]
        if not page.get("next_cursor"):
            return entries
        path = f"/api/v1/social/feed?user={account.username}&limit=100&cursor={page['next_cursor']}"
    return entries


async def settle(
    gateway: str,
    redis_url: str,
    accounts: Sequence[Account | Mapping[str, str]],
    within: float,
    quiet_for: float = 4.0,
    archived: Sequence[RawEntry] = (),
    lost_by_design: frozenset[str] = frozenset(),
) -> Count:
    """Count until two readings `quiet_for` apart agree and are exact, or `within`
    seconds pass; the last reading."""
    deadline = time.monotonic() + within
    last = await count(gateway, redis_url, accounts, archived, lost_by_design)
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet_for)  # pacing between readings, not synchronisation
        now = await count(gateway, redis_url, accounts, archived, lost_by_design)
        if now.to_json() == last.to_json() and now.exact:
            return now
        last = now
    return last
