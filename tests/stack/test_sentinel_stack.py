"""`astra up` on a Sentinel-managed Redis: the primary is killed under a stream of
orders through the gateway; the stack keeps serving after the promotion, and every
order accepted has its trade event and each effect (XP, feed entry) exactly once.
The test reports the downtime clients saw (the longest run of failed orders)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from drills.accounting import count
from loadtests.pool import prepare
from loadtests.run import LOAD_LIMITS
from tests.support.sentinel import MASTER, SentinelGroup
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

ORDERS = "/api/v1/trading/orders"


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    sentinels = SentinelGroup(tmp_path / "redis").start()
    yield sentinels
    sentinels.stop()


@pytest.fixture
def stack(tmp_path: Path, group: SentinelGroup) -> Iterator[Stack]:
    env = {
        **LOAD_LIMITS,
        # Someone else's Redis (the URL gives its credentials and database), its primary
        # found through the sentinels; WAIT 1 follows from the sentinels by default.
        "ASTRA_REDIS_URL": group.primary.url,
        "ASTRA_REDIS_SENTINELS": group.sentinels_setting,
        "ASTRA_REDIS_SENTINEL_MASTER": MASTER,
        "ASTRA_MONITORING": "false",
    }
    with running_stack(tmp_path, env) as running:
        yield running


async def test_the_stack_serves_through_a_failover_and_loses_no_order_effect(
    stack: Stack, group: SentinelGroup
) -> None:
    gateway = stack.url("gateway-1")
    accounts = await asyncio.to_thread(prepare, gateway, 4, "sentinel")
    outcomes: list[tuple[float, int]] = []  # (when, status; 0 = no answer)
    stop = asyncio.Event()

    async def trader(token: str) -> None:
        async with httpx.AsyncClient(base_url=gateway, timeout=5.0) as http:
            n = 0
            while not stop.is_set():
                n += 1
                key = f"{token[-12:]}-{n}"
                try:
                    response = await http.post(
                        ORDERS,
                        json={"symbol": "AAPL", "side": "buy", "quantity": "1"},
                        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
                    )
                    outcomes.append((time.monotonic(), response.status_code))
                except httpx.HTTPError:
                    outcomes.append((time.monotonic(), 0))
                await asyncio.sleep(0.2)  # ~5 orders/s per trader: pacing, not a sync

    traders = [asyncio.create_task(trader(a["token"])) for a in accounts]
    await asyncio.sleep(4)  # orders flowing on the first primary
    group.primary.kill()
    killed = time.monotonic()
    promotion = await asyncio.to_thread(group.until_promoted, group.replica)
    # Its supervisor restarts the old primary; Sentinel makes it the new one's replica,
    # so WAIT 1 has a replica to count again.
    await asyncio.to_thread(group.primary.start)
    await asyncio.sleep(12)  # orders flowing on the new primary
    stop.set()
    await asyncio.gather(*traders)

    after = [status for at, status in outcomes if at > killed + promotion + 10]
    assert after, "no order was placed after the failover"
    assert all(status == 201 for status in after), after  # serving again
    failed = [at for at, status in outcomes if status != 201]
    downtime = (max(failed) - min(failed)) if failed else 0.0
    print(  # the figure docs/scaling.md quotes
        f"\nstack failover: promoted in {promotion:.1f} s; {len(failed)} of {len(outcomes)} "
        f"orders failed, over {downtime:.1f} s"
    )

    new_primary = group.replica.url
    deadline = time.monotonic() + 60
    while True:
        counted = await count(gateway, new_primary, accounts)
        if counted.exact and counted.trade_events == counted.orders_accepted:
            break
        assert time.monotonic() < deadline, counted.to_json()
        await asyncio.sleep(2)  # the outbox and the consumers catching up
    # A 201 the client never saw (a timeout) is still an order: at least those answered.
    assert counted.orders_accepted >= sum(1 for _, s in outcomes if s == 201)
    assert counted.lost == 0
    assert counted.duplicated == 0
