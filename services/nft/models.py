"""The nft service's tables: minted tokens, and the outbox their events commit with."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Index, MetaData, String, Table, UniqueConstraint

from backbone.outbox import UTCDateTime, outbox_table

USER_ID_MAX = 128
USERNAME_MAX = 128
ACHIEVEMENT_MAX = 64
NAME_MAX = 200

metadata = MetaData()

tokens = Table(
    "nft_tokens",
    metadata,
    Column("token_id", String(36), primary_key=True),  # UUIDv5 of (user_id, achievement)
    Column("user_id", String(USER_ID_MAX), nullable=False),
    Column("username", String(USERNAME_MAX), nullable=False),
    Column("achievement", String(ACHIEVEMENT_MAX), nullable=False),
    Column("name", String(NAME_MAX), nullable=False),
    Column("rarity", String(16), nullable=False),
    Column("attributes", JSON, nullable=False),  # the token's metadata: str -> str
    Column("source_event_id", String(36), nullable=False),  # the achievement_unlocked event
    Column("minted_at", UTCDateTime, nullable=False),
    # The idempotency guarantee: one reward per user and achievement, whatever is redelivered.
    UniqueConstraint("user_id", "achievement", name="uq_nft_tokens_user_achievement"),
    Index("ix_nft_tokens_user_minted", "user_id", "minted_at"),
)

outbox = outbox_table(metadata)
