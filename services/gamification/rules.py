"""How XP, levels and achievements are earned: the rules players read, as pure functions.

XP
  every executed trade ...................................... +10 XP
  a sell that realises a profit (realized_pnl > 0) .......... +25 XP bonus (35 in all)

Levels: level n needs a cumulative 10 * n * (n - 1) XP, without a cap:

  level   1    2    3    4    5    6    7    8    9    10
  XP      0   20   60  120  200  300  420  560  720   900

Achievements, each unlocked at most once per user:

  first_trade            First Trade            the user's 1st trade (trade_number == 1)
  ten_trades             Ten Trades             the user's 10th trade (trade_number == 10)
  first_profitable_sell  First Profitable Sell  the first sell with realized_pnl > 0
  level_5                Level 5                reaching level 5

`first_trade` and `ten_trades` are decided by the trade itself (trading counts a
user's trades), so they can never be unlocked twice whatever the delivery order;
the other two depend on the state the trade finds (see `handlers` for the race
that leaves).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from math import isqrt

from contracts.trading import TradeExecutedData

XP_PER_TRADE = 10
XP_PROFITABLE_SELL_BONUS = 25
_LEVEL_STEP = 10  # level n needs _LEVEL_STEP * n * (n - 1) cumulative XP


@dataclass(frozen=True, slots=True)
class Achievement:
    code: str
    title: str
    description: str


ACHIEVEMENTS: dict[str, Achievement] = {
    a.code: a
    for a in (
        Achievement("first_trade", "First Trade", "Executed a first trade."),
        Achievement("ten_trades", "Ten Trades", "Executed ten trades."),
        Achievement(
            "first_profitable_sell", "First Profitable Sell", "Sold at a profit for the first time."
        ),
        Achievement("level_5", "Level 5", "Reached level 5."),
    )
}


def xp_for_level(level: int) -> int:
    """Cumulative XP that level `level` (>= 1) needs."""
    if level < 1:
        raise ValueError("levels start at 1")
    return _LEVEL_STEP * level * (level - 1)


def level_for(xp: int) -> int:
    """The level a cumulative XP total reaches."""
    if xp < 0:
        raise ValueError("XP is never negative")
    # Largest n with 10 n (n - 1) <= xp; isqrt gives it or one off, corrected below.
    level = max(1, (1 + isqrt(1 + 4 * xp // _LEVEL_STEP)) // 2)
    while xp_for_level(level + 1) <= xp:
        level += 1
    while xp_for_level(level) > xp:
        level -= 1
    return level


def xp_for_trade(trade: TradeExecutedData) -> tuple[int, str]:
    """XP a trade earns and why (the `reason` of the xp_gained event)."""
    if _profitable_sell(trade):
        return XP_PER_TRADE + XP_PROFITABLE_SELL_BONUS, "profitable_sell"
    return XP_PER_TRADE, "trade"


@dataclass(frozen=True, slots=True)
class Standing:
    """What a user has before a trade is applied."""

    xp: int = 0
    achievements: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Award:
    """What one trade earns, given the standing it finds."""

    amount: int
    reason: str
    total_xp: int
    old_level: int
    new_level: int
    unlocked: tuple[Achievement, ...]
    unlocked_at: datetime  # the trade's execution time: the same on every redelivery

    @property
    def levelled_up(self) -> bool:
        return self.new_level > self.old_level


def award_for_trade(standing: Standing, trade: TradeExecutedData) -> Award:
    amount, reason = xp_for_trade(trade)
    total = standing.xp + amount
    old_level, new_level = level_for(standing.xp), level_for(total)
    earned: list[str] = []
    if trade.trade_number == 1:
        earned.append("first_trade")
    if trade.trade_number == 10:
        earned.append("ten_trades")
    if _profitable_sell(trade):
        earned.append("first_profitable_sell")
    if old_level < 5 <= new_level:
        earned.append("level_5")
    unlocked = tuple(ACHIEVEMENTS[c] for c in earned if c not in standing.achievements)
    return Award(amount, reason, total, old_level, new_level, unlocked, trade.executed_at)


def _profitable_sell(trade: TradeExecutedData) -> bool:
    return trade.side == "sell" and trade.realized_pnl > Decimal(0)
