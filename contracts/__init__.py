"""Event contracts shared by producers and consumers.

Services never import each other; they agree on these models. Each module holds
one domain's events; `CATALOG` lists them all for docs and tooling. `SERVICES` names
the services themselves, in start order.
"""

from __future__ import annotations

from backbone.bus.streams import EventCatalog
from contracts import gamification, gateway, nft, trading, users
from contracts.services import SERVICES

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

__all__ = ["CATALOG", "SERVICES", "gamification", "gateway", "nft", "trading", "users"]
