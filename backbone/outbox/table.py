"""The outbox table a service adds to its own MetaData.

Because the table lives in the service's MetaData, `metadata.create_all()` (or
the service's migrations) creates it next to the domain tables, and an event row
commits or rolls back with the domain change it describes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    TypeDecorator,
)

DEFAULT_TABLE_NAME = "astra_outbox"


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps the zone (timestamptz); SQLite stores text without one, so
    values are normalised to UTC on the way in and labelled UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"{value!r} is not a timezone-aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def outbox_table(metadata: MetaData, name: str = DEFAULT_TABLE_NAME) -> Table:
    """Declare the outbox table in `metadata` (its schema, if any, applies).

    id          publish order: the relay sends unsent rows by ascending id
    event_id    the envelope's UUIDv7; consumers deduplicate on it
    stream      destination stream key
    envelope    the envelope JSON exactly as it goes on the wire
    created_at  commit-side timestamp (UTC), for the backlog's oldest age
    sent_at     set only after Redis accepted the entry; NULL = waiting
    attempts    XADD attempts so far (diagnostics for rows that keep failing)
    """
    table = Table(
        name,
        metadata,
        # SQLite only autoincrements an INTEGER PRIMARY KEY, never a BIGINT one.
        Column(
            "id",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("stream", String(200), nullable=False),
        Column("envelope", LargeBinary, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("sent_at", UTCDateTime, nullable=True),
        Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    )
    # The relay's query is "unsent rows by id": a partial index keeps it (and the
    # backlog count) proportional to the backlog, not to the table's history.
    Index(
        f"ix_{name}_unsent",
        table.c.id,
        postgresql_where=table.c.sent_at.is_(None),
        sqlite_where=table.c.sent_at.is_(None),
    )
    # prune() deletes sent rows by age.
    Index(f"ix_{name}_sent_at", table.c.sent_at)
    return table
