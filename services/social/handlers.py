"""The `social_feed_generators` group: four event types -> feed entries, each exactly once.

    trade_executed ──┐
    level_up ────────┤ entries.from_* ─▶ effects: SET entry, ZADD global + user feed, trim
    achievement ─────┤ applied with the ack in one script: a redelivered event (same
    nft_minted ──────┘ event_id) finds the group's marker and adds nothing

The entry id is the source event_id, so even an effect applied twice (it cannot
be) would overwrite one member, never add a second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backbone.bus.consumer import Event, Handler, HandlerContext
from backbone.bus.streams import EventType
from contracts.gamification import AchievementUnlocked, LevelUp
from contracts.nft import NftMinted
from contracts.trading import TradeExecuted
from services.social import entries
from services.social.schemas import FeedEntry
from services.social.store import FeedStore

GROUP = "social_feed_generators"


def feed_handlers(store: FeedStore) -> dict[EventType[Any], Handler]:
    """The group's handler per event type.

    ConsumerSpec(GROUP, feed_handlers(ctx.feed))
    """

    def into_feed(build: Callable[[Event[Any]], FeedEntry]) -> Handler:
        async def handle(event: Event[Any], ctx: HandlerContext) -> None:
            store.queue_entry(ctx.effects, build(event))

        return handle

    return {
        TradeExecuted: into_feed(entries.from_trade),
        LevelUp: into_feed(entries.from_level_up),
        AchievementUnlocked: into_feed(entries.from_achievement),
        NftMinted: into_feed(entries.from_nft),
    }
