"""The transactional outbox: events commit with the database change they describe.

    async with session.begin():                       # one SQL transaction
        session.add(order)
        await outbox.add(session, OrderPlaced, data)  # a row in astra_outbox
    relay.notify()
    # OutboxRelay: unsent rows -> XADD (id order) -> mark sent once Redis accepted

Delivery is at least once: a relay that stops between XADD and marking the rows
sent publishes those event_ids again, so consumers deduplicate by event_id.
Works on SQLite (the embedded default) and PostgreSQL through SQLAlchemy's
asyncio engines.
"""

from __future__ import annotations

from backbone.outbox.relay import Backlog, OutboxRelay
from backbone.outbox.table import DEFAULT_TABLE_NAME, UTCDateTime, outbox_table
from backbone.outbox.writer import Outbox

__all__ = [
    "DEFAULT_TABLE_NAME",
    "Backlog",
    "Outbox",
    "OutboxRelay",
    "UTCDateTime",
    "outbox_table",
]
