"""`astra up` on a Sentinel-managed Redis: the primary is killed under a stream of
orders through the gateway; the stack keeps serving after the promotion, and every
order accepted has its trade event and each effect (XP, feed entry) exactly once.
The test reports the downtime clients saw (the longest run of failed orders)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.pool import prepare
from loadtests.run import LOAD_LIMITS
from tests.support.failover import OrderStream
from tests.support.sentinel import MASTER, SentinelGroup
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e


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
    orders = OrderStream(gateway, accounts)
    orders.start()
    await asyncio.sleep(4)  # orders flowing on the first primary
    group.primary.kill()
    killed = time.monotonic()
    promotion = await asyncio.to_thread(group.until_promoted, group.replica)
    # Its supervisor restarts the old primary; Sentinel makes it the new one's replica,
    # so WAIT 1 has a replica to count again.
    await asyncio.to_thread(group.primary.start)
    await asyncio.sleep(12)  # orders flowing on the new primary
    await orders.stop()

    failed, downtime = orders.served_again(after=killed + promotion + 10)
    print(  # the figure docs/scaling.md quotes
        f"\nstack failover: promoted in {promotion:.1f} s; {failed} of "
        f"{len(orders.outcomes)} orders failed, over {downtime:.1f} s"
    )
    await orders.assert_every_effect_once(group.replica.url)
