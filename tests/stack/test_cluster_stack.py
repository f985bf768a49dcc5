"""`astra up` on a six-node Redis Cluster: the primary that holds the trade stream is
killed under a stream of orders through the gateway; the stack keeps serving after
its replica is promoted, and every order accepted has its trade event and each effect
(XP, feed entry) exactly once. Reports the downtime clients saw."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from contracts.trading import TradeExecuted
from drills.accounting import count
from loadtests.pool import prepare
from loadtests.run import LOAD_LIMITS
from tests.support.cluster import LocalCluster, ScriptSlotWatch, cross_slot_errors
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

ORDERS = "/api/v1/trading/orders"


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

    watch = ScriptSlotWatch(cluster).__enter__()  # every script the stack runs, by slot
    traders = [asyncio.create_task(trader(a["token"])) for a in accounts]
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
    stop.set()
    await asyncio.gather(*traders)
    watch.__exit__(None, None, None)
    assert len(watch.runs) > 100, "the watch saw too few scripts to judge"
    assert watch.multi_slot_runs() == [], "a script touched keys of more than one slot"
    assert cross_slot_errors(cluster) == []
    # Sharded for real: every primary holds part of the stack's keys.
    assert all(size > 0 for size in cluster.primary_key_counts()), cluster.primary_key_counts()

    after = [status for at, status in outcomes if at > killed + promotion + 10]
    assert after, "no order was placed after the failover"
    assert all(status == 201 for status in after), after  # serving again
    failed = [at for at, status in outcomes if status != 201]
    downtime = (max(failed) - min(failed)) if failed else 0.0
    print(  # the figure docs/scaling.md quotes
        f"\nstack cluster failover: promoted in {promotion:.1f} s; "
        f"{len(failed)} of {len(outcomes)} "
        f"orders failed, over {downtime:.1f} s"
    )

    seed = next(n for n in cluster.nodes if n.running).url
    deadline = time.monotonic() + 60
    while True:
        counted = await count(gateway, seed, accounts, cluster=True)
        if counted.exact and counted.trade_events == counted.orders_accepted:
            break
        assert time.monotonic() < deadline, counted.to_json()
        await asyncio.sleep(2)  # the outbox and the consumers catching up
    # A 201 the client never saw (a timeout) is still an order: at least those answered.
    assert counted.orders_accepted >= sum(1 for _, s in outcomes if s == 201)
    assert counted.lost == 0
    assert counted.duplicated == 0
