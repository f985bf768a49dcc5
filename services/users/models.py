"""The users service's tables; the outbox shares their MetaData (and so their transactions)."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table

from backbone.outbox import UTCDateTime, outbox_table

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),  # UUIDv7
    Column("username", String(32), nullable=False, unique=True),
    Column("email", String(254), nullable=False, unique=True),  # stored lower-cased
    Column("password_hash", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_login_at", UTCDateTime, nullable=True),
)

outbox = outbox_table(metadata)
