"""The `nft_reward_distributors` group: achievement_unlocked -> one minted reward token.

    achievement_unlocked ─▶ one SQL transaction: token row + nft_minted outbox row ─▶ relay
    the kernel acks after the handler returned

Redis effects are not used: the state is SQL, so the idempotency is SQL's too.
A redelivered event (the ack was lost after the commit) or a second unlock event
for the same (user, achievement) finds the row, or hits UNIQUE(user_id,
achievement) when it races a peer, and mints nothing.
"""

from __future__ import annotations

import logging

from backbone.bus.consumer import Event, HandlerContext
from backbone.outbox import OutboxRelay
from contracts.gamification import AchievementUnlockedData
from services.nft.store import NftStore

GROUP = "nft_reward_distributors"

log = logging.getLogger("services.nft")


class Minter:
    """Handles `achievement_unlocked`.

    minter = Minter(ctx.store, ctx.relay)
    ConsumerSpec(GROUP, {AchievementUnlocked: minter.on_unlocked})
    """

    def __init__(self, store: NftStore, relay: OutboxRelay) -> None:
        self._store = store
        self._relay = relay

    async def on_unlocked(self, event: Event[AchievementUnlockedData], ctx: HandlerContext) -> None:
        minted = await self._store.mint(event.data, event.event_id)
        if minted is None:
            log.info(
                "reward already minted",
                extra={"user_id": event.data.user_id, "achievement": event.data.achievement},
            )
            return
        self._relay.notify()
        log.info(
            "reward minted",
            extra={
                "user_id": minted.user_id,
                "achievement": minted.achievement,
                "token_id": minted.token_id,
                "rarity": minted.rarity,
            },
        )
