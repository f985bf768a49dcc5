"""`astra up` on a six-node Redis Cluster: the primary that holds the trade stream is
killed under a stream of orders through the gateway; the stack keeps serving after
its replica is promoted, and every order accepted has its trade event and each effect
(XP, feed entry) exactly once. Reports the downtime clients saw."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.trading import TradeExecuted
from loadtests.pool import prepare
from loadtests.run import LOAD_LIMITS
from tests.support.cluster import LocalCluster, ScriptSlotWatch, cross_slot_errors
from tests.support.failover import OrderStream
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    why = LocalCluster.available()
    if why:
        pytest.skip(f"no Redis Cluster here: {why}")
    local = LocalCluster(tmp_path / "cluster").start()
    yield local
    local.stop()


@pytest.fixture
def stack(tmp_path: Path, cluster: LocalCluster) -> Iterator[Stack]:
    env = {
        **LOAD_LIMITS,
        # Someone else's Redis: one node of the cluster, the clients learn the rest;
        # WAIT 1 (on each shard's primary) follows from the cluster setting by default.
        "ASTRA_REDIS_URL": cluster.url,
        "ASTRA_REDIS_CLUSTER": "true",
        "ASTRA_MONITORING": "false",
    }
    with running_stack(tmp_path, env) as running:
        yield running


async def test_the_stack_serves_through_a_failover_and_loses_no_order_effect(
    stack: Stack, cluster: LocalCluster
) -> None:
    gateway = stack.url("gateway-1")
    accounts = await asyncio.to_thread(prepare, gateway, 4, "cluster")
    orders = OrderStream(gateway, accounts)
    watch = ScriptSlotWatch(cluster).__enter__()  # every script the stack runs, by slot
    orders.start()
    await asyncio.sleep(4)  # orders flowing on the first primary
    victim = cluster.primary_for(TradeExecuted.stream_key)
    victim.kill()
    killed = time.monotonic()
    await asyncio.to_thread(cluster.until_failed_over, victim)
    promotion = time.monotonic() - killed
    # Its supervisor restarts the dead node; it rejoins as the new primary's replica,
    # so WAIT 1 on that shard has a replica to count again.
    await asyncio.to_thread(victim.start)
    await asyncio.sleep(12)  # orders flowing on the new primary
    await orders.stop()
    watch.__exit__(None, None, None)
    assert len(watch.runs) > 100, "the watch saw too few scripts to judge"
    assert watch.multi_slot_runs() == [], "a script touched keys of more than one slot"
    assert cross_slot_errors(cluster) == []
    # Sharded for real: every primary holds part of the stack's keys.
    assert all(size > 0 for size in cluster.primary_key_counts()), cluster.primary_key_counts()

    failed, downtime = orders.served_again(after=killed + promotion + 10)
    print(  # the figure docs/scaling.md quotes
        f"\nstack cluster failover: promoted in {promotion:.1f} s; "
        f"{failed} of {len(orders.outcomes)} orders failed, over {downtime:.1f} s"
    )
    seed = next(n for n in cluster.nodes if n.running).url
    await orders.assert_every_effect_once(seed, cluster=True)
