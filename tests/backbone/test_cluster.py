"""The kernel on a real six-node Redis Cluster (stack/redis_cluster.py).

What runs on it: publishing (with a per-shard WAIT), consumer groups, the reaper, the
dead-letter stream, idempotency markers and the commit, now two steps because an
event's effects name keys in many slots; the outbox relay; the registry; the shared
rate limit. No command may cross slots: every node's error counters are read at the
end of each test and must show no CROSSSLOT (nor a script touching a key elsewhere).

Then a primary is killed mid-stream: the cluster fails over and the consumers carry
on. With WAIT (the default on a cluster) every event the outbox let go of is applied
exactly once; without it, events Redis acknowledged are lost with the dead primary
(the control that makes it a test).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from redis.backoff import EqualJitterBackoff
from sqlalchemy.ext.asyncio import async_sessionmaker

from backbone import keys
from backbone.bus.consumer import Consumer, Event, HandlerContext
from backbone.bus.publisher import Publisher
from backbone.config import BusSettings, RegistrySettings
from backbone.outbox import OutboxRelay
from backbone.redis_pool import is_cluster, redis_client
from backbone.registry import Discovery, InstanceInfo, Registrar
from gateway.config import RateLimitRule, RateLimitSettings
from gateway.metrics import GatewayMetrics
from gateway.ratelimit import RateLimiter
from tests.support.cluster import LocalCluster, ScriptSlotWatch, ask, cross_slot_errors
from tests.support.events import Ping, Pinged, Pong, Ponged
from tests.support.failover import drained, members_at_least, sqlite_outbox
from tests.support.poll import poll_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STREAM = Pinged.stream_key
USERS = 17  # per-user keys spread over every shard
FAST = BusSettings(
    replica_acks=1,
    replica_ack_timeout_ms=500,
    block_ms=100,
    claim_idle_ms=600,
    reaper_interval_ms=200,
    max_deliveries=2,
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    why = LocalCluster.available()
    if why:
        pytest.skip(f"no Redis Cluster here: {why}")
    local = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    yield local
    local.stop()


def _client(cluster: LocalCluster) -> aioredis.Redis:
    return redis_client(
        cluster.url, connect_timeout=0.5, socket_timeout=2.0, wait_for_connection=1.0, cluster=True
    )


@pytest.fixture
async def redis(cluster: LocalCluster) -> AsyncIterator[aioredis.Redis]:
    client = _client(cluster)
    await client.flushall()  # every primary: each test starts from an empty cluster
    cross_slot_errors(cluster)  # and with its error counters at zero
    with ScriptSlotWatch(cluster) as watch:
        yield client
    ran = _script_calls(cluster)
    errors = cross_slot_errors(cluster)
    await client.aclose()
    assert not errors, f"cross-slot commands reached the cluster: {errors}"
    assert len(watch.runs) >= ran, f"MONITOR saw {len(watch.runs)} of {ran} script runs"
    assert watch.multi_slot_runs() == [], "a script touched keys of more than one slot"


def _script_calls(cluster: LocalCluster) -> int:
    """Scripts the primaries ran since the last reset (the watch must have seen each)."""
    ran = 0
    for node in cluster.nodes:
        if node.running:
            for line in ask(node.port, "INFO", "commandstats").splitlines():
                if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
                    stats = dict(kv.split("=") for kv in line.split(":", 1)[1].split(","))
                    ran += int(stats["calls"]) - int(stats["failed_calls"])
    return ran


def _slots(*keys_: str) -> set[int]:
    from redis.crc import key_slot

    return {key_slot(k.encode()) for k in keys_}


def test_a_cluster_client_is_made_and_refused_with_sentinels() -> None:
    from backbone.process import ProcessSettings

    client = redis_client(
        "redis://127.0.0.1:1/0", connect_timeout=0.1, socket_timeout=0.1,
        wait_for_connection=0.1, cluster=True,
    )  # fmt: skip
    assert is_cluster(client)
    settings = ProcessSettings(redis_cluster=True, registry=RegistrySettings(token="t" * 32))
    assert settings.bus.replica_acks == 1  # replicas exist: WAIT on by default
    with pytest.raises(ValueError, match="either Sentinel-managed or a cluster"):
        ProcessSettings(
            redis_cluster=True, redis_sentinels="127.0.0.1:26379",
            registry=RegistrySettings(token="t" * 32),
        )  # fmt: skip


def _xp_key(n: int) -> str:
    return f"test:xp:user-{n % USERS}"


async def _apply(event: Event[Ping], ctx: HandlerContext) -> None:
    """Effects in many slots: a per-user counter, a board, a set, and a downstream event."""
    n = event.data.n
    ctx.effects.call("INCRBY", _xp_key(n), 10)
    ctx.effects.call("ZINCRBY", "test:board", 10, f"user-{n % USERS}")
    ctx.effects.call("SADD", "test:applied", event.event_id)
    ctx.publish(Ponged, Pong(n=n))


async def _total_xp(redis: aioredis.Redis) -> int:
    total = 0
    for u in range(USERS):
        total += int(await redis.get(_xp_key(u)) or 0)
    return total


def _consumer(redis: aioredis.Redis, name: str, registry: CollectorRegistry, **kw: Any) -> Consumer:
    handlers = kw.pop("handlers", {Pinged: _apply})
    return Consumer(
        redis, group="g", consumer=name, handlers=handlers, settings=kw.pop("settings", FAST),
        producer="test", registry=registry, **kw,
    )  # fmt: skip


async def test_the_bus_commits_effects_across_slots_exactly_once(redis: aioredis.Redis) -> None:
    registry = CollectorRegistry()
    assert len(_slots(*(_xp_key(u) for u in range(USERS)), "test:board", STREAM)) > 10
    publisher = Publisher(redis, producer="test", settings=FAST, registry=registry)
    consumer = _consumer(redis, "c1", registry)
    await consumer.start()
    try:
        single = await publisher.publish(Pinged, Ping(n=0))
        assert (single.replicated, single.durable) == (1, True)  # the shard's replica has it
        batch = await publisher.publish_batch([(Pinged, Ping(n=n)) for n in range(1, 200)])
        assert all(p.durable for p in batch)
        # The same event id again (a resend): its effects must not be applied twice.
        await publisher.publish(Pinged, Ping(n=0), event_id=single.event_id)
        await poll_until(
            lambda: _pending_is(redis, STREAM, 0, after=201), "all 201 entries acked", timeout=20
        )
        assert int(await redis.scard("test:applied")) == 200
        assert await _total_xp(redis) == 2000
        board = await redis.zrange("test:board", 0, -1, withscores=True)
        assert sum(score for _, score in board) == 2000
        assert int(await redis.xlen(Ponged.stream_key)) == 200  # published once each
        duplicates = registry.get_sample_value(
            "astra_bus_duplicate_events_total", {"stream": STREAM, "group": "g"}
        )
        assert duplicates == 1
    finally:
        await consumer.aclose()
        await publisher.aclose()


async def test_bad_events_reach_the_dead_letter_stream_on_a_cluster(
    redis: aioredis.Redis,
) -> None:
    """A poison entry, a handler that keeps failing, and an effect Redis refuses: each
    dead-lettered (two writes on a cluster) and acked; the good events around them applied."""
    registry = CollectorRegistry()

    async def picky(event: Event[Ping], ctx: HandlerContext) -> None:
        if event.data.n == 13:
            raise RuntimeError("thirteen")
        if event.data.n == 14:
            ctx.effects.call("INCR", "test:not-a-counter")  # a hash: WRONGTYPE
            return
        await _apply(event, ctx)

    await redis.hset("test:not-a-counter", "x", "1")
    publisher = Publisher(redis, producer="test", settings=FAST, registry=registry)
    consumer = _consumer(redis, "c1", registry, handlers={Pinged: picky})
    await consumer.start()
    try:
        await publisher.publish_batch([(Pinged, Ping(n=n)) for n in range(20)])
        await redis.xadd(STREAM, {"envelope": b"{not json"})
        dlq = keys.dead_letter_stream(STREAM)
        await poll_until(
            lambda: _pending_is(redis, STREAM, 0, after=21), "every entry settled", timeout=20
        )
        records = await redis.xrange(dlq)
        reasons = sorted(r[b"reason"].decode() for _, r in records)
        assert reasons == ["effect_error", "failures", "poison"]
        assert int(await redis.scard("test:applied")) == 18
    finally:
        await consumer.aclose()
        await publisher.aclose()


class _DiesBeforeTheAck:
    """A client whose MULTI (the ack after a dead letter) never runs: a consumer that died
    between the dead letter and its ack."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self.died = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._redis, name)

    def pipeline(self, transaction: bool = True) -> Any:
        if not transaction:
            return self._redis.pipeline(transaction=False)
        died = self.died

        class Frozen:
            def __getattr__(self, _name: str) -> Any:
                return lambda *a, **k: self

            async def execute(self) -> None:
                died.set()
                await asyncio.Event().wait()

        return Frozen()


def _dead(consumer: Consumer) -> None:
    """The rest of a dead process: its reaper and read loops stop sending anything."""
    for task in consumer._tasks:
        task.cancel()


CHILD = Path(__file__).with_name("cluster_consumer_child.py")


def _keys_off(cluster: LocalCluster, shard: Any, n: int) -> list[str]:
    """`n` keys whose slots another primary than `shard` serves."""
    found, i = [], 0
    while len(found) < n:
        key = f"test:elsewhere:{i}"
        if cluster.primary_for(key) is not shard:
            found.append(key)
        i += 1
    return found


async def test_a_consumer_killed_between_the_steps_applies_nothing_twice(
    cluster: LocalCluster, redis: aioredis.Redis
) -> None:
    """A real kill -9 between the two steps. The consumer (its own process) reads a
    batch; while its handler runs, the stream's primary pauses writes (CLIENT PAUSE
    WRITE), so step one (effects on other shards) lands and step two (the ack, in the
    stream's slot) is held; the process is killed and the held ack dies with it (Redis
    discards a paused command whose client is gone). A survivor's reaper then finds
    every slot's marker: the held batch is applied once, and acked."""
    shard = cluster.primary_for(STREAM)
    counters = _keys_off(cluster, shard, 3)
    publisher = Publisher(redis, producer="test", settings=FAST, registry=CollectorRegistry())
    await publisher.publish_batch([(Pinged, Ping(n=n)) for n in range(5)])
    child = subprocess.Popen(
        [sys.executable, str(CHILD), cluster.url, "doomed", "1.0", *counters],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    survivor = _consumer(redis, "survivor", CollectorRegistry())
    try:
        assert child.stdout is not None
        assert (await asyncio.to_thread(child.stdout.readline)).strip() == "started"

        async def batch_read() -> bool:
            return (await redis.xpending(STREAM, "g"))["pending"] == 5

        await poll_until(batch_read, "the child read the batch", timeout=10)
        ask(shard.port, "CLIENT", "PAUSE", "20000", "WRITE")  # the handler sleeps 1 s a event

        async def effects_landed() -> bool:
            return int(await redis.scard("test:applied")) == 5

        await poll_until(effects_landed, "step one applied on the other shards", timeout=15)
        child.kill()  # with its ack held by the pause
        child.wait(5)
        ask(shard.port, "CLIENT", "UNPAUSE")
        assert (await redis.xpending(STREAM, "g"))["pending"] == 5  # the ack died with it
        await survivor.start()
        await poll_until(
            lambda: _pending_is(redis, STREAM, 0, after=5), "the survivor acked them", timeout=20
        )
        for key in counters:
            assert int(await redis.get(key) or 0) == 5  # each event's effect once
        assert int(await redis.scard("test:applied")) == 5
    finally:
        ask(shard.port, "CLIENT", "UNPAUSE")
        if child.poll() is None:
            child.kill()
            child.wait(5)
        await survivor.aclose()
        await publisher.aclose()


async def test_a_consumer_dead_between_dead_letter_and_ack_still_dead_letters(
    redis: aioredis.Redis,
) -> None:
    """The dead letter written, the ack not: redelivered, it is dead-lettered again (at
    least once; both records name the same entry) and acked, never dropped unrecorded."""
    registry = CollectorRegistry()
    entry = await redis.xadd(STREAM, {"envelope": b"{not json"})
    doomed = _consumer(redis, "doomed", registry)
    doomed_client = _DiesBeforeTheAck(redis)
    doomed.redis = doomed_client  # type: ignore[assignment]  # built on the real one
    await doomed.start()
    survivor = _consumer(redis, "survivor", CollectorRegistry())
    try:
        await asyncio.wait_for(doomed_client.died.wait(), 10)
        _dead(doomed)
        dlq = keys.dead_letter_stream(STREAM)
        assert int(await redis.xlen(dlq)) == 1
        assert (await redis.xpending(STREAM, "g"))["pending"] == 1  # not acked
        await survivor.start()
        await poll_until(
            lambda: _pending_is(redis, STREAM, 0, after=1), "the survivor acked it", timeout=20
        )
        records = await redis.xrange(dlq)
        assert [r[b"entry_id"] for _, r in records] == [entry, entry]
    finally:
        await doomed.aclose(grace=0.2)
        await survivor.aclose()


async def test_the_registry_and_the_shared_rate_limit_work_on_a_cluster(
    cluster: LocalCluster, redis: aioredis.Redis
) -> None:
    services = ("trading", "users", "social", "nft", "gamification")
    settings = RegistrySettings(
        heartbeat_seconds=0.2, ttl_seconds=1.0, poll_seconds=0.1, token="t" * 32
    )
    registrars = [
        Registrar(
            redis,
            InstanceInfo(
                service=service,
                instance_id=f"{service}-1",
                url="http://127.0.0.1:8102",
                version="1",
                status="ready",
            ),
            settings,
        )
        for service in services
    ]
    assert len(_slots(*(keys.registry_index(s) for s in services))) == 5
    discovery = Discovery(redis, settings, services=None, registry=CollectorRegistry())
    for registrar in registrars:
        await registrar.start()
    await discovery.start()
    try:

        async def all_found() -> bool:
            return all(discovery.instances(s) for s in services)

        async def trading_gone() -> bool:
            return not discovery.instances("trading")

        await poll_until(all_found, "every service discovered through the cluster")
        await registrars[0].aclose()
        await poll_until(trading_gone, "trading deregistered")
    finally:
        await discovery.aclose()
        for registrar in registrars[1:]:
            await registrar.aclose()

    metrics = GatewayMetrics(CollectorRegistry())
    rule = RateLimitRule(rate=0.5, burst=3)
    # Two gateways, one budget: the limit is shared through the cluster.
    other = _client(cluster)
    try:
        a = RateLimiter(redis, RateLimitSettings(), metrics)
        b = RateLimiter(other, RateLimitSettings(), metrics)
        decisions = [await (a if n % 2 else b).check("auth", rule, "ip:10.0.0.9") for n in range(5)]
        assert [d.allowed for d in decisions] == [True, True, True, False, False]
        assert not a.in_memory  # decided in Redis, not per replica
        assert not b.in_memory
    finally:
        await other.aclose()


def _setuser_args(rule: str) -> list[str]:
    """`user NAME on #.. (~k +cmd) ..` (an aclfile line) as ACL SETUSER's arguments."""
    words, selector = [], None
    for word in rule.split()[1:]:
        if selector is not None:
            selector.append(word)
            if word.endswith(")"):
                words.append(" ".join(selector))
                selector = None
        elif word.startswith("(") and not word.endswith(")"):
            selector = [word]
        else:
            words.append(word)
    return words


async def test_services_run_on_a_cluster_as_their_least_privilege_users(
    cluster: LocalCluster, redis: aioredis.Redis
) -> None:
    """The stack's ACL users on every node (the default user stays on for the nodes'
    own replication here): trading publishes a trade as `trading`; gamification's real
    handler consumes it as `gamification`, its two-step commit included. A rule
    missing for the cluster (slot map, command table, a slot's marker) fails this."""
    from contracts.trading import TradeExecuted
    from services.gamification.handlers import GROUP, XpAwarder
    from services.gamification.store import GamificationStore, user_key
    from stack.redis_acl import stack_users, url_for
    from tests.support.events import trade_data

    users = {u.name: u for u in stack_users()}
    for node in cluster.nodes:
        for name in ("trading", "gamification"):
            direct = aioredis.Redis(port=node.port)
            await direct.execute_command(
                "ACL", "SETUSER", *_setuser_args(users[name].rule(f"pw-{name}"))
            )
            await direct.aclose()

    def as_user(name: str) -> aioredis.Redis:
        url = url_for(cluster.url, name, f"pw-{name}")
        return redis_client(
            url, connect_timeout=1, socket_timeout=2, wait_for_connection=1, cluster=True
        )

    trading, gamification = as_user("trading"), as_user("gamification")
    registry = CollectorRegistry()
    publisher = Publisher(trading, producer="trading", settings=FAST, registry=registry)
    awarder = XpAwarder(GamificationStore(gamification))
    consumer = Consumer(
        gamification, group=GROUP, consumer="g-1", handlers={TradeExecuted: awarder.on_trade},
        settings=FAST, producer="gamification", registry=registry, commit_each=True,
    )  # fmt: skip
    await consumer.start()
    try:
        for n in range(1, 11):
            done = await publisher.publish(TradeExecuted, trade_data(n, "alice"))
            assert done.durable

        async def awarded() -> bool:
            return int(await redis.hget(user_key("u-alice"), "xp") or 0) > 0

        await poll_until(awarded, "alice's XP, awarded as the gamification user", timeout=15)
        await poll_until(
            lambda: _pending_is(redis, TradeExecuted.stream_key, 0, after=10, group=GROUP),
            f"every trade acked (consumer error: {consumer.last_error})",
            timeout=15,
        )
        assert consumer.last_error is None
        assert int(await redis.xlen("astra.gamification.xp_gained.v1")) == 10
    finally:
        await consumer.aclose()
        await publisher.aclose()
        await trading.aclose()
        await gamification.aclose()
        for node in cluster.nodes:
            direct = aioredis.Redis(port=node.port)
            await direct.execute_command("ACL", "DELUSER", "trading", "gamification")
            await direct.aclose()


async def _pending_is(
    redis: aioredis.Redis, stream: str, n: int, *, after: int, group: str = "g"
) -> bool:
    """The group has read at least `after` entries and has `n` pending."""
    if not await redis.exists(stream):  # XINFO would answer ERR, counted as a failure
        return False
    for info in await redis.xinfo_groups(stream):
        if info["name"] in (group.encode(), group):
            read = int(info.get("entries-read") or 0)
            return read >= after and int(info["pending"]) == n
    return False


# --- a primary dies mid-stream ---------------------------------------------------------


def _stall_replication(cluster: LocalCluster, primary_port: int, replica: Any) -> None:
    """From now on the replica gets nothing its primary takes: paused, and the primary
    handed more than the socket buffers hold, so what follows queues in its memory."""
    replica.process.send_signal(signal.SIGSTOP)
    filler = 48_000_000
    with socket.create_connection(("127.0.0.1", primary_port), timeout=10) as sock:
        # The filler key in the primary's own slots (its hash tag is the stream name).
        key = f"filler:{{{STREAM}}}"
        header = f"*3\r\n$3\r\nSET\r\n${len(key)}\r\n{key}\r\n${filler}\r\n".encode()
        sock.sendall(header + b"x" * filler + b"\r\n")
        assert sock.recv(16).startswith(b"+OK")


def _replica_of(cluster: LocalCluster, primary: Any) -> Any:
    node_id = ask(primary.port, "CLUSTER", "MYID").strip()
    for node in cluster.nodes:
        if node is primary or not node.running:
            continue
        for line in ask(node.port, "CLUSTER", "NODES").splitlines():
            parts = line.split()
            if "myself" in parts[2] and "slave" in parts[2] and parts[3] == node_id:
                return node
    raise RuntimeError(f"no replica of :{primary.port}")


@pytest.mark.parametrize("replica_acks", [1, 0], ids=["with WAIT", "without WAIT (control)"])
async def test_a_primary_killed_mid_stream_loses_no_event_the_outbox_let_go_of(
    tmp_path: Path, replica_acks: int
) -> None:
    """Its own cluster: this test kills a node. Replication to the stream's replica
    stalls, the outbox goes on writing, the primary dies and its replica is promoted
    without what it missed. With WAIT the relay marked none of that sent: republished,
    applied exactly once. Without WAIT, acknowledged events are gone."""
    why = LocalCluster.available()
    if why:
        pytest.skip(f"no Redis Cluster here: {why}")
    cluster = LocalCluster(tmp_path / "cluster").start()
    registry = CollectorRegistry()
    settings = FAST.model_copy(
        update={"replica_acks": replica_acks, "replica_ack_timeout_ms": 200, "claim_idle_ms": 1000}
    )
    engine, outbox = await sqlite_outbox(tmp_path)
    redis = _client(cluster)
    relay = OutboxRelay(
        engine, outbox.table, redis, settings, poll_interval=0.05, publish_timeout=2.0,
        backoff=EqualJitterBackoff(cap=0.3, base=0.05), registry=registry,
    )  # fmt: skip
    consumer = _consumer(redis, "c1", registry, settings=settings, commit_each=True)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    written: list[str] = []

    async def write(n: int) -> None:
        async with sessions() as session, session.begin():
            written.append(await outbox.add(session, Pinged, Ping(n=n)))
        relay.notify()

    await relay.start()
    await consumer.start()
    try:
        for n in range(100):
            await write(n)
        await poll_until(
            lambda: members_at_least(redis, "test:applied", 100),
            "the first 100 applied",
            timeout=20,
        )
        # The consumer falls behind (here: stops), so what the failover takes is not
        # already applied elsewhere: effects live on other shards, which do not fail.
        await consumer.aclose()
        primary = cluster.primary_for(STREAM)
        replica = _replica_of(cluster, primary)
        await asyncio.to_thread(_stall_replication, cluster, primary.port, replica)
        for n in range(100, 160):
            await write(n)
        await asyncio.sleep(0.5)  # the relay's attempts while the replica misses them
        primary.kill()
        killed = time.monotonic()
        replica.process.send_signal(signal.SIGCONT)
        await asyncio.to_thread(cluster.until_failed_over, primary)
        promoted = time.monotonic() - killed
        # Its supervisor restarts the dead node; it rejoins as the new primary's replica
        # (until then WAIT 1 on that shard cannot succeed: the outbox holds, loses nothing).
        await asyncio.to_thread(primary.start)
        consumer = _consumer(redis, "c1", registry, settings=settings, commit_each=True)
        await consumer.start()  # caught up again, on the promoted primary
        for n in range(160, 200):
            await write(n)
        await poll_until(lambda: drained(engine, outbox), "the outbox drained", timeout=40)
        drained_after = time.monotonic() - killed
        if replica_acks:
            await poll_until(
                lambda: members_at_least(redis, "test:applied", 200), "all 200 applied", timeout=30
            )
            members = await redis.smembers("test:applied")
            assert {m.decode() for m in members} == set(written)
            assert await _total_xp(redis) == 2000  # each exactly once, across slots
            unreplicated = registry.get_sample_value(
                "astra_bus_unreplicated_publishes_total", {"stream": STREAM, "path": "outbox"}
            )
            assert (unreplicated or 0) >= 60  # the cut-off window, refused as sent
        else:
            await poll_until(
                lambda: members_at_least(redis, "test:applied", 140),
                "the survivors applied",
                timeout=30,
            )
            await asyncio.sleep(1.0)  # nothing more is coming: the control's last look
            applied = int(await redis.scard("test:applied"))
            assert applied < 200, "without WAIT the failover should have lost events"
        lost = 200 - int(await redis.scard("test:applied"))
        print(
            f"\ncluster failover ({'WAIT' if replica_acks else 'no WAIT'}): promoted in "
            f"{promoted:.1f} s, outbox drained {drained_after:.1f} s after the kill, "
            f"{lost} of 200 events lost"
        )
    finally:
        await consumer.aclose()
        await relay.aclose()
        await redis.aclose()
        await engine.dispose()
        for node in cluster.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGCONT)
        cluster.stop()
