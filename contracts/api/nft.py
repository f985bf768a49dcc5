"""What the nft API answers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class NftPublic(BaseModel):
    token_id: str
    name: str
    rarity: Literal["common", "rare", "epic", "legendary"]
    achievement: str
    metadata: dict[str, str]
    minted_at: datetime
