"""The public API's bodies, declared here for the gateway's OpenAPI document.

The services own the real models; the gateway never imports services (they are
separate deployables), so the shapes clients see are restated here. They cannot
drift: tests/gateway/test_openapi.py compares every body and answer of the route
table with the service's own model (`model_json_schema()`, equal but for titles),
and the whole-stack test checks real answers against this document. Decimals
travel as strings in plain notation ("10000.00").
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# As the services declare them (services/users/schemas.py, services/trading/schemas.py).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL_PATTERN = rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$"
DecimalStr = str  # answers: plain notation, "10000.00"
# Requests: a JSON number or a decimal string; positive, at most 4 decimal places.
Quantity = Annotated[
    Decimal,
    Field(gt=0, le=Decimal("1000000"), max_digits=11, decimal_places=4, allow_inf_nan=False),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(_Request):
    username: Annotated[str, Field(min_length=3, max_length=32, pattern=r"^[a-z0-9_]{3,32}$")]
    email: Annotated[str, Field(min_length=3, max_length=254, pattern=_EMAIL_PATTERN)]
    password: Annotated[str, Field(min_length=8, max_length=128)]


class TokenCreate(_Request):
    """Login: the password is not re-checked against the registration policy."""

    username: Annotated[str, Field(min_length=1, max_length=32)]
    password: Annotated[str, Field(min_length=1, max_length=128)]


class UserPublic(BaseModel):
    id: str
    username: str
    email: str


class TokenPublic(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int  # seconds


class MarketPublic(BaseModel):
    symbol: str
    price: DecimalStr


class OrderCreate(_Request):
    symbol: Annotated[str, Field(min_length=1, max_length=16)]
    side: Literal["buy", "sell"]
    quantity: Quantity


class OrderPublic(BaseModel):
    order_id: str
    symbol: str
    side: Literal["buy", "sell"]
    quantity: DecimalStr
    price: DecimalStr
    notional: DecimalStr
    status: Literal["filled"]
    executed_at: datetime


class PositionPublic(BaseModel):
    symbol: str
    quantity: DecimalStr
    average_price: DecimalStr
    market_value: DecimalStr
    unrealized_pnl: DecimalStr


class PortfolioPublic(BaseModel):
    cash: DecimalStr
    positions: list[PositionPublic]
    equity: DecimalStr


class AchievementPublic(BaseModel):
    code: str
    title: str
    unlocked_at: datetime


class ProfilePublic(BaseModel):
    user_id: str
    username: str
    xp: int
    level: int
    achievements: list[AchievementPublic]
    next_level_xp: int = Field(description="Cumulative XP the next level needs.")


class LeaderboardEntry(BaseModel):
    rank: int = Field(ge=1)
    user_id: str
    username: str
    xp: int
    level: int


class NftPublic(BaseModel):
    token_id: str
    name: str
    rarity: Literal["common", "rare", "epic", "legendary"]
    achievement: str
    metadata: dict[str, str]
    minted_at: datetime


class FeedEntry(BaseModel):
    id: str = Field(description="The event_id of the event the entry comes from.")
    kind: Literal["trade", "level_up", "achievement", "nft"]
    user_id: str
    username: str
    text: str
    occurred_at: datetime
    data: dict[str, str | int]


class FeedPage(BaseModel):
    items: list[FeedEntry]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of the gateway and the services."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
