"""Event contracts shared by producers and consumers.

Services never import each other; they agree on these models. Each module holds
one domain's events; `CATALOG` lists them all for docs and tooling.
"""

from __future__ import annotations

from backbone.bus.streams import EventCatalog
from contracts import gamification, gateway, nft, trading, users

CATALOG = EventCatalog(
    users.UserRegistered,
    users.UserLoggedIn,
    trading.TradeExecuted,
    trading.PositionUpdated,
    gamification.XpGained,
    gamification.LevelUp,
    gamification.AchievementUnlocked,
    nft.NftMinted,
    gateway.ActionAudited,
)

__all__ = ["CATALOG", "gamification", "gateway", "nft", "trading", "users"]
