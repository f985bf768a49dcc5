"""The `gamification_xp_processors` group: one executed trade -> XP, levels, achievements.

    trade_executed ─▶ read the user's state ─▶ rules.award_for_trade
        ─▶ effects: HINCRBY xp, ZINCRBY leaderboard, HSETNX achievements
        ─▶ publish: xp_gained, level_up (when the level rose), achievement_unlocked (each new one)
    all applied with the ack in one script, or not at all

A redelivered trade (same event_id) finds the group's processed-marker and is
acked without effects, so XP is counted and each event published once per trade.

Residual race, with two or more gamification instances: two trades of the same
user handled at the same moment by different instances each start from a state
without the other's XP. Totals stay exact (both HINCRBY), the leaderboard too,
and an achievement keeps its first unlock time (HSETNX); `first_trade` and
`ten_trades` come from the trade's own `trade_number`, so they cannot double.
What can go wrong is only in the published events: an `xp_gained.total_xp` or a
`level_up` computed from a stale total, and `first_profitable_sell` / `level_5`
published twice. Consumers downstream tolerate that: nft mints once per (user,
achievement) by a UNIQUE constraint. A single instance (the default) has no such
race: one read loop handles the stream in order, and the group commits each
event before handling the next (`ConsumerSpec.commit_each`), so every read sees
the previous trade's effects.

On a Redis Cluster the commit is two steps and its effects land slot by slot
(backbone/bus/effects.py). A consumer that dies after some slots' shares were
applied leaves the same class of error behind: the redelivery reads a total that
already holds this trade's XP, so its `xp_gained.total_xp` or `level_up` may be
computed from it. XP, the leaderboard and achievements stay exact (each slot's
share is applied once, under its own marker).
"""

from __future__ import annotations

import logging

from backbone.bus.consumer import Event, HandlerContext
from contracts.gamification import (
    AchievementUnlocked,
    AchievementUnlockedData,
    LevelUp,
    LevelUpData,
    XpGained,
    XpGainedData,
)
from contracts.trading import TradeExecutedData
from services.gamification.rules import Standing, award_for_trade
from services.gamification.store import GamificationStore

GROUP = "gamification_xp_processors"

log = logging.getLogger("services.gamification")


class XpAwarder:
    """Handles `trade_executed` for the group.

    awarder = XpAwarder(ctx.store)
    ConsumerSpec(GROUP, {TradeExecuted: awarder.on_trade}, commit_each=True)
    """

    def __init__(self, store: GamificationStore) -> None:
        self._store = store

    async def on_trade(self, event: Event[TradeExecutedData], ctx: HandlerContext) -> None:
        trade = event.data
        user_id = trade.user_id
        state = await self._store.profile(user_id)
        standing = Standing(xp=state.xp, achievements=frozenset(state.achievements))
        award = award_for_trade(standing, trade)
        unlocked = {a.code: award.unlocked_at for a in award.unlocked}

        self._store.queue_award(ctx.effects, user_id, trade.username, award.amount, unlocked)
        ctx.publish(
            XpGained,
            XpGainedData(
                user_id=user_id,
                username=trade.username,
                amount=award.amount,
                total_xp=award.total_xp,
                reason=award.reason,
                source_event_id=event.event_id,
            ),
        )
        if award.levelled_up:
            ctx.publish(
                LevelUp,
                LevelUpData(
                    user_id=user_id,
                    username=trade.username,
                    level=award.new_level,
                    total_xp=award.total_xp,
                ),
            )
        for achievement in award.unlocked:
            ctx.publish(
                AchievementUnlocked,
                AchievementUnlockedData(
                    user_id=user_id,
                    username=trade.username,
                    achievement=achievement.code,
                    title=achievement.title,
                    unlocked_at=award.unlocked_at,
                ),
            )
        if award.unlocked or award.levelled_up:
            log.info(
                "progress",
                extra={
                    "user_id": user_id,
                    "level": award.new_level,
                    "unlocked": [a.code for a in award.unlocked],
                },
            )
