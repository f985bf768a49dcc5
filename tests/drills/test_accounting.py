"""The drills' trade index reads the stream with the consumers' own decoder: an entry
they dead-letter is no trade, and a trim drill's removed entries still count."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from backbone import keys
from backbone.bus.envelope import encode
from contracts.trading import TradeExecuted, TradeExecutedData
from drills.accounting import _trade_events, event_ids

pytestmark = pytest.mark.integration
STREAM = TradeExecuted.stream_key


def _trade(order: str, pnl: str = "0") -> bytes:
    data = TradeExecutedData(
        order_id=order, user_id="u1", username="ann", symbol="AAPL", side="sell",
        quantity=Decimal(1), price=Decimal(10), notional=Decimal(10),
        realized_pnl=Decimal(pnl), trade_number=1, executed_at=datetime.now(UTC),
    )  # fmt: skip
    return encode(TradeExecuted, data, producer="trading", correlation_id=f"req-{order}")[1]


async def test_poison_is_counted_apart_and_archived_entries_are_indexed(
    redis_client: aioredis.Redis,
) -> None:
    await redis_client.xadd(STREAM, {keys.ENVELOPE_FIELD: _trade("o-live", "5")})
    await redis_client.xadd(STREAM, {keys.ENVELOPE_FIELD: b'{"drill": "poison"}'})
    await redis_client.xadd(STREAM, {b"other": b"field"})
    archived = [(b"1-0", {keys.ENVELOPE_FIELD.encode(): _trade("o-trimmed")})]

    found, profit, by_request, not_events = await _trade_events(redis_client, archived)

    assert set(found["u1"]) == {"o-live", "o-trimmed"}
    assert not_events == 2
    assert sorted(profit.values()) == [Decimal(0), Decimal(5)]
    assert by_request["req-o-live"] == {"o-live"}
    assert event_ids(archived) == list(found["u1"]["o-trimmed"])
