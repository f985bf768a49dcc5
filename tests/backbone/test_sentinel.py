"""Redis under Sentinel, live: the clients follow a failover, a publish says whether a
replica holds it, and with WAIT no event the outbox let go of is lost when the primary
dies (without WAIT the same failover loses events: the control that makes it a test).

A primary, a replica and three sentinels on free ports (tests/support/sentinel.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from redis.backoff import EqualJitterBackoff
from sqlalchemy.ext.asyncio import async_sessionmaker

from backbone.bus.consumer import Consumer, Event, HandlerContext
from backbone.bus.publisher import Publisher
from backbone.config import BusSettings
from backbone.outbox import OutboxRelay
from backbone.redis_pool import parse_sentinels, redis_client
from tests.support.events import Ping, Pinged
from tests.support.failover import drained, members_at_least, sqlite_outbox
from tests.support.poll import poll_until
from tests.support.sentinel import MASTER, SentinelGroup

pytestmark = pytest.mark.integration
STREAM = Pinged.stream_key


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    sentinels = SentinelGroup(tmp_path / "redis").start()
    yield sentinels
    sentinels.stop()


def _client(group: SentinelGroup) -> aioredis.Redis:
    return redis_client(
        "redis://127.0.0.1:1/0",  # the host is the sentinels' to name
        connect_timeout=0.5,
        socket_timeout=2.0,
        wait_for_connection=1.0,
        sentinels=group.sentinels,
        sentinel_master=MASTER,
    )


def test_the_sentinel_setting_is_parsed_or_refused() -> None:
    assert parse_sentinels("") == []
    assert parse_sentinels("10.0.0.1:26379, sentinel-b:26380") == [
        ("10.0.0.1", 26379),
        ("sentinel-b", 26380),
    ]
    with pytest.raises(ValueError, match="'nope' is not host:port"):
        parse_sentinels("10.0.0.1:26379,nope")


async def test_a_publish_says_whether_a_replica_holds_it(tmp_path: Path) -> None:
    """No Sentinel needed for WAIT itself: a primary and a replica, replication stalled."""
    group = SentinelGroup(tmp_path / "redis", sentinels=0).start()
    registry = CollectorRegistry()
    redis = aioredis.Redis.from_url(group.primary.url)
    settings = BusSettings(replica_acks=1, replica_ack_timeout_ms=300)
    publisher = Publisher(redis, producer="test", settings=settings, registry=registry)
    try:
        held = await publisher.publish(Pinged, Ping(n=1))
        assert (held.replicated, held.durable) == (1, True)
        await asyncio.to_thread(group.stall_replication)
        alone = await publisher.publish(Pinged, Ping(n=2))
        assert (alone.replicated, alone.durable) == (0, False)
        batch = await publisher.publish_batch([(Pinged, Ping(n=3)), (Pinged, Ping(n=4))])
        assert [p.durable for p in batch] == [False, False]
        unreplicated = registry.get_sample_value(
            "astra_bus_unreplicated_publishes_total", {"stream": STREAM, "path": "direct"}
        )
        assert unreplicated == 3
    finally:
        await redis.aclose()
        group.stop()


@pytest.mark.parametrize("replica_acks", [1, 0], ids=["with WAIT", "without WAIT (control)"])
async def test_a_failover_loses_no_event_the_outbox_let_go_of(
    group: SentinelGroup, tmp_path: Path, replica_acks: int
) -> None:
    """Replication stalls (the primary goes on taking writes), the primary dies, and the
    replica is promoted without what it missed. With WAIT the relay marked none of that
    sent and publishes it again: every event applied exactly once. Without, it is gone."""
    registry = CollectorRegistry()
    settings = BusSettings(
        replica_acks=replica_acks,
        replica_ack_timeout_ms=200,
        block_ms=100,
        claim_idle_ms=1000,
        reaper_interval_ms=200,
    )
    engine, outbox = await sqlite_outbox(tmp_path)
    redis = _client(group)
    relay = OutboxRelay(
        engine,
        outbox.table,
        redis,
        settings,
        poll_interval=0.05,
        publish_timeout=2.0,
        backoff=EqualJitterBackoff(cap=0.3, base=0.05),
        registry=registry,
    )

    async def apply(event: Event[Ping], ctx: HandlerContext) -> None:
        ctx.effects.call("SADD", "applied", event.event_id)
        ctx.effects.call("INCR", "applied:count")  # once per event, or the count says so

    consumer = Consumer(
        redis, group="g", consumer="c1", handlers={Pinged: apply}, settings=settings,
        producer="test", registry=registry, commit_each=True,
    )  # fmt: skip
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    written: list[str] = []

    async def write(n: int) -> None:
        async with sessions() as session, session.begin():
            written.append(await outbox.add(session, Pinged, Ping(n=n)))
        relay.notify()

    await relay.start()
    await consumer.start()
    try:
        for n in range(100):  # healthy: replicated as it goes
            await write(n)
        await poll_until(
            lambda: members_at_least(redis, "applied", 100), "the first 100 applied", timeout=20
        )
        await asyncio.to_thread(group.stall_replication)  # what follows is the primary's alone
        for n in range(100, 160):
            await write(n)
        await asyncio.sleep(0.5)  # the relay's attempts while the replica misses them
        group.primary.kill()
        killed = time.monotonic()
        group.resume(group.replica)
        promotion = await asyncio.to_thread(group.until_promoted, group.replica)
        # Its supervisor restarts the dead one; Sentinel makes it the new primary's replica.
        await asyncio.to_thread(group.primary.start)
        for n in range(160, 200):  # life goes on, on the new primary
            await write(n)
        await poll_until(lambda: drained(engine, outbox), "the outbox drained", timeout=40)
        drained_after = time.monotonic() - killed
        if replica_acks:
            await poll_until(
                lambda: members_at_least(redis, "applied", 200), "all 200 applied", timeout=30
            )
            members = await redis.smembers("applied")
            assert {m.decode() if isinstance(m, bytes) else m for m in members} == set(written)
            assert int(await redis.get("applied:count") or 0) == 200  # each exactly once
            unreplicated = registry.get_sample_value(
                "astra_bus_unreplicated_publishes_total", {"stream": STREAM, "path": "outbox"}
            )
            assert (unreplicated or 0) >= 60  # the cut-off window, refused as sent
        else:
            # Let whatever survived arrive, then count what the failover took.
            await poll_until(
                lambda: members_at_least(redis, "applied", 140), "the survivors applied", timeout=30
            )
            await asyncio.sleep(1.0)  # nothing more is coming: the control's last look
            applied = int(await redis.scard("applied"))
            assert applied < 200, "without WAIT the failover should have lost events"
        print(
            f"\nfailover ({'WAIT' if replica_acks else 'no WAIT'}): promoted in "
            f"{promotion:.1f} s, outbox drained {drained_after:.1f} s after the kill"
        )
    finally:
        await consumer.aclose()
        await relay.aclose()
        await redis.aclose()
        await engine.dispose()
