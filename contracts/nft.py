from __future__ import annotations

from datetime import datetime
from typing import Literal

from backbone.bus.streams import EventType
from contracts._base import EventData


class NftMintedData(EventData):
    token_id: str
    user_id: str
    username: str
    achievement: str
    name: str
    rarity: Literal["common", "rare", "epic", "legendary"]
    metadata: dict[str, str]
    minted_at: datetime


NftMinted = EventType("nft", "nft_minted", 1, NftMintedData, "A reward NFT was minted.")
