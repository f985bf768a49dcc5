"""One feed entry per event: what the feed says about a trade, a level, an achievement, a mint."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from backbone.bus.consumer import Event
from contracts.gamification import AchievementUnlockedData, LevelUpData
from contracts.nft import NftMintedData
from contracts.trading import TradeExecutedData
from services.social.schemas import FeedEntry


def from_trade(event: Event[TradeExecutedData]) -> FeedEntry:
    t = event.data
    verb = "bought" if t.side == "buy" else "sold"
    text = f"{t.username} {verb} {_plain(t.quantity)} {t.symbol} at {_plain(t.price)}"
    if t.side == "sell" and t.realized_pnl != 0:
        text += f" (realized P&L {'+' if t.realized_pnl > 0 else ''}{_plain(t.realized_pnl)})"
    return _entry(
        event,
        "trade",
        t.user_id,
        t.username,
        text,
        {
            "order_id": t.order_id,
            "symbol": t.symbol,
            "side": t.side,
            "quantity": _plain(t.quantity),
            "price": _plain(t.price),
            "realized_pnl": _plain(t.realized_pnl),
            "trade_number": t.trade_number,
        },
    )


def from_level_up(event: Event[LevelUpData]) -> FeedEntry:
    d = event.data
    return _entry(
        event,
        "level_up",
        d.user_id,
        d.username,
        f"{d.username} reached level {d.level}",
        {"level": d.level, "total_xp": d.total_xp},
    )


def from_achievement(event: Event[AchievementUnlockedData]) -> FeedEntry:
    d = event.data
    return _entry(
        event,
        "achievement",
        d.user_id,
        d.username,
        f"{d.username} unlocked the achievement {d.title}",
        {"achievement": d.achievement, "title": d.title},
    )


def from_nft(event: Event[NftMintedData]) -> FeedEntry:
    d = event.data
    return _entry(
        event,
        "nft",
        d.user_id,
        d.username,
        f"{d.username} earned the {d.rarity} NFT {d.name}",
        {"token_id": d.token_id, "name": d.name, "rarity": d.rarity, "achievement": d.achievement},
    )


def _entry(
    event: Event[Any],
    kind: str,
    user_id: str,
    username: str,
    text: str,
    data: dict[str, str | int],
) -> FeedEntry:
    return FeedEntry.model_validate(
        {
            "id": event.event_id,
            "kind": kind,
            "user_id": user_id,
            "username": username,
            "text": text,
            "occurred_at": event.envelope.occurred_at,
            "data": data,
        }
    )


def _plain(value: Decimal) -> str:
    """12.50000000 -> "12.5", 1E+2 -> "100": decimal text without exponent or padding."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text
