"""The public API's bodies, as the gateway's OpenAPI document names them.

The services' public models are declared once, in contracts/api/ (the gateway never
imports services: they are separate deployables), and both sides import them, so
they cannot drift: tests/gateway/test_openapi.py checks that every body and answer
of the route table is the very model the service's route uses (the one exception,
the trading service's `OrderCreate`, adds a check of its market's symbols and is
compared by schema), and the whole-stack test checks real answers against this
document. Decimals travel as strings in plain notation ("10000.00"). `Problem` is
the gateway's own.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from contracts.api.gamification import AchievementPublic, LeaderboardEntry, ProfilePublic
from contracts.api.nft import NftPublic
from contracts.api.social import FeedEntry, FeedPage
from contracts.api.trading import (
    DecimalStr,
    MarketPublic,
    OrderCreate,
    OrderPublic,
    PortfolioPublic,
    PositionPublic,
    Quantity,
)
from contracts.api.users import TokenCreate, TokenPublic, UserCreate, UserPublic


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of the gateway and the services."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


__all__ = [
    "AchievementPublic",
    "DecimalStr",
    "FeedEntry",
    "FeedPage",
    "LeaderboardEntry",
    "MarketPublic",
    "NftPublic",
    "OrderCreate",
    "OrderPublic",
    "PortfolioPublic",
    "PositionPublic",
    "Problem",
    "ProfilePublic",
    "Quantity",
    "TokenCreate",
    "TokenPublic",
    "UserCreate",
    "UserPublic",
]
