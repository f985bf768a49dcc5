"""A feed entry (stored and served as is) and a page of them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["trade", "level_up", "achievement", "nft"]


class FeedEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(description="The event_id of the event the entry comes from.")
    kind: Kind
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
