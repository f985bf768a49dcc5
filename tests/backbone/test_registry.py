"""Service registry against real redis-servers: registration, expiry, discovery, forgery."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from backbone import keys
from backbone.config import RegistrySettings
from backbone.errors import RegistryError
from backbone.registry import Discovery, InstanceInfo, Registrar, View
from backbone.registry._record import HostPolicy, RecordRejected, decode_record, encode_record
from stack.netutil import free_port
from stack.redis_server import RedisServer
from tests.support.poll import poll_until

pytestmark = pytest.mark.integration

TOKEN = "test-registry-token"
HEARTBEAT, TTL, POLL = 0.2, 0.6, 0.1
FAST = RegistrySettings(
    heartbeat_seconds=HEARTBEAT, ttl_seconds=TTL, poll_seconds=POLL, token=TOKEN
)
LOCAL = HostPolicy(FAST.allowed_hosts)
CHILD = Path(__file__).with_name("registry_child.py")
MARGIN = 0.5  # scheduling slack on a loaded CI machine, seconds


def make_info(service: str = "trading", instance_id: str = "i-1", **update: Any) -> InstanceInfo:
    fields: dict[str, Any] = {
        "service": service,
        "instance_id": instance_id,
        "url": f"http://127.0.0.1:8000/{instance_id}",
        "version": "1.2.3",
        "started_at": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        "metadata": {"zone": "a", "pid": "42"},
        "status": "ready",
    }
    return InstanceInfo(**(fields | update))


@pytest.fixture
def metrics() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., aioredis.Redis]]:
    """Clients with short timeouts, all closed after the test."""
    clients: list[aioredis.Redis] = []

    def make(url: str, **kwargs: Any) -> aioredis.Redis:
        client = aioredis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0, **kwargs
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


class Parts:
    """Registrars and discoveries of one test, closed (newest first) after it."""

    def __init__(self, metrics: CollectorRegistry) -> None:
        self.metrics = metrics
        self.opened: list[Registrar | Discovery] = []

    async def registrar(
        self,
        redis: aioredis.Redis,
        info: InstanceInfo,
        settings: RegistrySettings = FAST,
        *,
        start: bool = True,
    ) -> Registrar:
        registrar = Registrar(redis, info, settings, registry=self.metrics)
        self.opened.append(registrar)
        if start:
            await registrar.start()
        return registrar

    async def discovery(
        self,
        redis: aioredis.Redis,
        settings: RegistrySettings = FAST,
        services: list[str] | None = None,
    ) -> Discovery:
        discovery = Discovery(redis, settings, services=services, registry=self.metrics)
        self.opened.append(discovery)
        await discovery.start()
        return discovery

    async def aclose(self) -> None:
        for part in reversed(self.opened):
            await part.aclose()


@pytest.fixture
async def parts(
    metrics: CollectorRegistry, connect: Callable[..., aioredis.Redis]
) -> AsyncIterator[Parts]:
    made = Parts(metrics)
    yield made
    await made.aclose()


async def live_ids(discovery: Discovery, service: str = "trading") -> set[str]:
    await discovery.refresh()
    return {i.instance_id for i in discovery.instances(service)}


async def registry_keys(client: aioredis.Redis) -> dict[str, int]:
    """Every key in the database with its PTTL (ms; -1 = no expiry)."""
    return {key.decode(): await client.pttl(key) async for key in client.scan_iter(count=1000)}


async def index_members(client: aioredis.Redis, service: str = "trading") -> set[str]:
    members: list[bytes] = await client.zrange(keys.registry_index(service), 0, -1)  # type: ignore[assignment]
    return {m.decode() for m in members}


def sample(metrics: CollectorRegistry, name: str, **labels: str) -> float:
    return metrics.get_sample_value(name, labels) or 0.0


# --- pure: record signing and the model ---------------------------------------------------


def test_record_round_trips_and_refuses_tampering() -> None:
    info = make_info()
    raw = encode_record(info, TOKEN)
    assert decode_record(raw, TOKEN, service="trading", instance_id="i-1", hosts=LOCAL) == info

    with pytest.raises(RecordRejected) as wrong_token:
        decode_record(raw, "another-token", service="trading", instance_id="i-1", hosts=LOCAL)
    assert wrong_token.value.reason == "signature"

    doc = json.loads(raw)
    doc["body"] = doc["body"].replace("127.0.0.1", "10.6.6.6")
    with pytest.raises(RecordRejected) as tampered:
        decode_record(json.dumps(doc), TOKEN, service="trading", instance_id="i-1", hosts=LOCAL)
    assert tampered.value.reason == "signature"

    with pytest.raises(RecordRejected) as moved:  # a genuine record replayed under another id
        decode_record(raw, TOKEN, service="trading", instance_id="i-2", hosts=LOCAL)
    assert moved.value.reason == "invalid"
    with pytest.raises(RecordRejected) as garbage:
        decode_record(b"\xff not json", TOKEN, service="trading", instance_id="i-1", hosts=LOCAL)
    assert garbage.value.reason == "invalid"


def test_instance_info_validates_what_ends_up_in_keys() -> None:
    assert make_info().ready
    assert not make_info(status="draining").ready
    assert InstanceInfo(service="users", url="http://h:1", version="1").status == "starting"
    with pytest.raises(ValidationError):
        make_info(started_at=datetime(2024, 5, 1, 12, 0))  # naive: ambiguous across hosts
    with pytest.raises(ValidationError):
        make_info(service="trading}:x")  # would break out of the hash tag
    with pytest.raises(ValidationError):
        make_info(url="not a url")
    info = make_info()
    with pytest.raises(ValidationError):
        info.status = "draining"  # type: ignore[misc]  # frozen: change it by model_copy


# --- 1. register, discover, deregister ----------------------------------------------------


async def test_registered_instance_is_discovered_and_deregistered_on_close(
    redis_url: str, connect: Callable[..., aioredis.Redis], parts: Parts
) -> None:
    client = connect(redis_url)
    discovery = await parts.discovery(connect(redis_url))
    assert discovery.instances("trading") == ()

    info = make_info()
    registrar = await parts.registrar(client, info)
    assert "service=trading instance=i-1 status=ready beats=1" in repr(registrar)

    found = await poll_until(lambda: _instances(discovery), "the instance to be discovered")
    assert found == (info,)  # every field, exactly
    assert discovery.all_instances() == {"trading": (info,)}
    assert not discovery.stale
    assert discovery.last_refresh_age < 1

    await registrar.aclose()
    assert await client.exists(keys.registry_instance("trading", "i-1")) == 0
    assert await client.zscore(keys.registry_index("trading"), "i-1") is None
    await discovery.refresh()
    assert discovery.instances("trading") == ()
    await registrar.aclose()  # idempotent


async def _instances(discovery: Discovery, service: str = "trading") -> tuple[InstanceInfo, ...]:
    return discovery.instances(service)


# --- 2 + 3. a crashed instance vanishes within one TTL, its keys expire ---------------------


async def test_killed_instance_vanishes_within_one_ttl(
    redis_url: str, connect: Callable[..., aioredis.Redis], parts: Parts
) -> None:
    client = connect(redis_url)
    discovery = await parts.discovery(connect(redis_url))
    # Never refreshes during the test: shows expiry is applied from the cache alone.
    frozen = await parts.discovery(connect(redis_url), FAST.model_copy(update={"poll_seconds": 60}))
    await parts.registrar(client, make_info(instance_id="survivor"))

    child = await spawn_child(redis_url, "doomed")
    try:
        await poll_until(
            lambda: _has(discovery, "doomed"), "the child instance to be discovered", timeout=5
        )
        await frozen.refresh()
        assert {i.instance_id for i in frozen.instances("trading")} == {"doomed", "survivor"}
    finally:
        child.kill()  # SIGKILL: no deregistration, no goodbye
        await child.wait()
    killed_at = time.monotonic()

    ttls = await registry_keys(client)
    assert keys.registry_instance("trading", "doomed") in ttls
    assert all(pttl > 0 for pttl in ttls.values()), ttls  # a crash leaves nothing immortal

    await poll_until(lambda: _gone(discovery, "doomed"), "discovery to drop the dead instance")
    vanished_after = time.monotonic() - killed_at
    assert vanished_after <= TTL + POLL + MARGIN, vanished_after
    await poll_until(lambda: _gone(frozen, "doomed"), "the cached expiry to hide it")
    assert time.monotonic() - killed_at <= TTL + MARGIN

    record = keys.registry_instance("trading", "doomed")
    await poll_until(
        lambda: _key_gone(client, record), "the dead record to expire", timeout=TTL + MARGIN
    )
    assert time.monotonic() - killed_at <= TTL + MARGIN
    assert await _has(discovery, "survivor")
    assert "doomed" not in await live_ids(discovery)
    await poll_until(
        lambda: _index_without(client, "doomed"), "a heartbeat to prune the dead member"
    )
    assert await live_ids(discovery) == {"survivor"}


async def _has(discovery: Discovery, instance_id: str) -> bool:
    return instance_id in {i.instance_id for i in discovery.instances("trading")}


async def _gone(discovery: Discovery, instance_id: str) -> bool:
    return not await _has(discovery, instance_id)


async def _key_gone(client: aioredis.Redis, key: str) -> bool:
    return await client.exists(key) == 0


async def _index_without(client: aioredis.Redis, instance_id: str) -> bool:
    return await client.zscore(keys.registry_index("trading"), instance_id) is None


async def test_every_registry_key_has_an_expiry(
    redis_url: str, connect: Callable[..., aioredis.Redis], parts: Parts
) -> None:
    client = connect(redis_url)
    long_ttl = FAST.model_copy(update={"ttl_seconds": 3.0})
    short = await parts.registrar(client, make_info(instance_id="short"))
    long = await parts.registrar(client, make_info(instance_id="long"), long_ttl)
    await parts.registrar(client, make_info(service="users", instance_id="u-1"))
    await parts.discovery(connect(redis_url))
    expected = {
        keys.registry_instance("trading", "short"),
        keys.registry_instance("trading", "long"),
        keys.registry_instance("users", "u-1"),
        keys.registry_index("trading"),
        keys.registry_index("users"),
        keys.REGISTRY_SERVICES,
    }

    for _ in range(5):  # across several heartbeats
        ttls = await registry_keys(client)
        assert set(ttls) == expected
        assert all(pttl > 0 for pttl in ttls.values()), ttls
        # Neither set may expire before the longest-lived instance it lists
        # (read in one MULTI so no heartbeat lands between the three reads).
        pipe = client.pipeline(transaction=True)
        for key in (
            keys.registry_instance("trading", "long"),
            keys.registry_index("trading"),
            keys.REGISTRY_SERVICES,
        ):
            pipe.pttl(key)
        long_record, index, services = await pipe.execute()
        assert long_record > TTL * 1000
        assert index >= long_record - 5  # ms: the same instant, give or take a clock tick
        assert services >= long_record - 5
        await asyncio.sleep(HEARTBEAT)  # observing over time, not waiting for anything

    await short.aclose()
    await long.aclose()
    ttls = await registry_keys(client)
    assert keys.registry_instance("trading", "long") not in ttls
    assert all(pttl > 0 for pttl in ttls.values()), ttls


# --- 4. nothing deletes a live instance ---------------------------------------------------


async def test_nothing_deletes_a_live_instance(
    redis_url: str, connect: Callable[..., aioredis.Redis], parts: Parts
) -> None:
    client = connect(redis_url)
    discovery = await parts.discovery(connect(redis_url))
    a = await parts.registrar(client, make_info(instance_id="a"))
    b = await parts.registrar(client, make_info(instance_id="b"))
    index = keys.registry_index("trading")

    seconds, micros = await client.time()
    now_ms = seconds * 1000 + micros // 1000
    await client.zadd(index, {"ghost": now_ms - 1})  # an instance that expired already
    await poll_until(lambda: _index_without(client, "ghost"), "a heartbeat to prune the ghost")
    assert await index_members(client) == {"a", "b"}

    await a.aclose()  # its deregistration touches its own record and member only
    assert await index_members(client) == {"b"}
    assert await client.exists(keys.registry_instance("trading", "b")) == 1
    await discovery.refresh()

    beats_before = b.beats
    watch_until = time.monotonic() + 5 * TTL
    while time.monotonic() < watch_until:  # b must stay visible through five TTLs
        assert await client.exists(keys.registry_instance("trading", "b")) == 1
        assert [i.instance_id for i in discovery.instances("trading")] == ["b"]
        await asyncio.sleep(POLL / 2)
    assert b.beats >= beats_before + 5 * TTL / HEARTBEAT - 5
    assert b.failures == 0


# --- 5 + 6. Redis restarted empty; stale cache during the outage ---------------------------


async def test_restarted_empty_redis_gets_the_record_back(
    redis_factory: Callable[..., RedisServer],
    connect: Callable[..., aioredis.Redis],
    parts: Parts,
    metrics: CollectorRegistry,
) -> None:
    server = redis_factory()
    discovery = await parts.discovery(connect(server.url))
    registrar = await parts.registrar(connect(server.url), make_info())
    child = await spawn_child(server.url, "dies-during-outage")
    try:
        await poll_until(lambda: _has(discovery, "dies-during-outage"), "the child to be found")
        assert await _has(discovery, "i-1")

        server.kill()
        await poll_until(lambda: _is_stale(discovery), "discovery to notice the outage")
        assert await _has(discovery, "i-1")  # last known view, still served
    finally:
        child.kill()
        await child.wait()

    restarted = redis_factory(port=server.port)  # same address, empty data
    await poll_until(lambda: _is_fresh(discovery), "discovery to recover")
    recovered_at = time.monotonic()
    # Redis forgot everyone; the view keeps them until they could have beaten again.
    assert {"i-1", "dies-during-outage"} <= await _ids(discovery)
    assert sample(metrics, "astra_registry_cache_stale") == 0

    fresh = connect(restarted.url)
    record = keys.registry_instance("trading", "i-1")
    await poll_until(lambda: _key_exists(fresh, record), "the next heartbeat to re-create it")
    await poll_until(lambda: _gone(discovery, "dies-during-outage"), "the dead one to go")
    assert time.monotonic() - recovered_at <= TTL + POLL + MARGIN
    assert discovery.instances("trading") == (registrar.info,)
    ttls = await registry_keys(fresh)
    assert len(ttls) == 3  # record, index, services set
    assert all(pttl > 0 for pttl in ttls.values()), ttls


async def spawn_child(redis_url: str, instance_id: str) -> asyncio.subprocess.Process:
    """A registered "trading" instance in a process of its own, ready to be killed."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), redis_url, "trading", instance_id, str(HEARTBEAT), str(TTL),
        TOKEN, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 20)
        assert line.strip() == b"registered", line
    except BaseException:
        child.kill()
        await child.wait()
        raise
    return child


async def _ids(discovery: Discovery) -> set[str]:
    return {i.instance_id for i in discovery.instances("trading")}


async def _is_stale(discovery: Discovery) -> bool:
    return discovery.stale


async def _is_fresh(discovery: Discovery) -> bool:
    return not discovery.stale


async def _key_exists(client: aioredis.Redis, key: str) -> bool:
    try:
        return await client.exists(key) == 1
    except (aioredis.ConnectionError, OSError):
        return False


async def test_discovery_serves_its_last_view_while_redis_is_down(
    redis_factory: Callable[..., RedisServer],
    connect: Callable[..., aioredis.Redis],
    parts: Parts,
    metrics: CollectorRegistry,
) -> None:
    server = redis_factory()
    discovery = await parts.discovery(connect(server.url))
    registrar = await parts.registrar(connect(server.url), make_info())
    await poll_until(lambda: _has(discovery, "i-1"), "the instance to be discovered")
    assert sample(metrics, "astra_registry_cache_stale") == 0

    server.kill()
    await poll_until(lambda: _is_stale(discovery), "discovery to notice the outage")
    assert sample(metrics, "astra_registry_cache_stale") == 1
    with pytest.raises(RegistryError):
        await discovery.refresh()
    # Long after the record would have expired, the cache still routes to the instance.
    await poll_until(lambda: _older_than(discovery, 3 * TTL), "the view to outlive its TTL")
    assert discovery.instances("trading") == (registrar.info,)
    assert discovery.all_instances() == {"trading": (registrar.info,)}
    assert sample(metrics, "astra_registry_refresh_failures_total") >= 2
    assert sample(metrics, "astra_registry_heartbeat_failures_total", service="trading") >= 1
    assert registrar.failures >= 1  # the heartbeat keeps trying instead of dying

    redis_factory(port=server.port)
    await poll_until(lambda: _is_fresh(discovery), "discovery to recover", timeout=5)
    assert sample(metrics, "astra_registry_cache_stale") == 0
    await poll_until(lambda: _has(discovery, "i-1"), "the instance to be re-registered")
    await poll_until(lambda: _no_failures(registrar), "the heartbeat to recover")


async def _older_than(discovery: Discovery, seconds: float) -> bool:
    return discovery.last_refresh_age > seconds


async def _no_failures(registrar: Registrar) -> bool:
    return registrar.failures == 0


async def test_start_tolerates_redis_down_for_discovery_not_for_registration(
    redis_factory: Callable[..., RedisServer],
    connect: Callable[..., aioredis.Redis],
    parts: Parts,
    metrics: CollectorRegistry,
) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with pytest.raises(RegistryError, match="could not register"):
        await parts.registrar(connect(url), make_info())

    discovery = await parts.discovery(connect(url), services=["trading"])
    assert discovery.stale
    assert discovery.instances("trading") == ()
    assert sample(metrics, "astra_registry_cache_stale") == 1

    redis_factory(port=port)
    await parts.registrar(connect(url), make_info())
    await poll_until(lambda: _has(discovery, "i-1"), "discovery to catch up once Redis is up")
    assert not discovery.stale
    assert sample(metrics, "astra_registry_instances", service="trading", status="ready") == 1


async def test_close_is_prompt_even_mid_command(
    redis_url: str, connect: Callable[..., aioredis.Redis], metrics: CollectorRegistry
) -> None:
    """Regression: on Python 3.11 redis-py may lose a cancel; aclose() must not hang on it."""
    client = connect(redis_url)
    busy = FAST.model_copy(update={"poll_seconds": 0.001})  # always mid-refresh
    registrar = Registrar(client, make_info(), busy, registry=metrics)
    await registrar.start()
    for i in range(60):
        discovery = Discovery(client, busy, registry=metrics)
        await discovery.start()
        await asyncio.sleep(i % 7 * 0.0005)
        await asyncio.wait_for(discovery.aclose(), TTL + MARGIN)
    await asyncio.wait_for(registrar.aclose(), 2 * HEARTBEAT + MARGIN)
    assert await client.exists(keys.registry_instance("trading", "i-1")) == 0


# --- 7. forged records --------------------------------------------------------------------


async def test_records_without_the_token_are_invisible_and_counted(
    redis_url: str,
    connect: Callable[..., aioredis.Redis],
    parts: Parts,
    metrics: CollectorRegistry,
) -> None:
    client = connect(redis_url)
    genuine = await parts.registrar(client, make_info(instance_id="genuine"))
    await parts.registrar(
        client,
        make_info(instance_id="wrong-token"),
        FAST.model_copy(update={"token": "not-the-shared-token"}),
    )

    # A client without the token writes straight to Redis, as a registrar would.
    seconds, micros = await client.time()
    expiry = seconds * 1000 + micros // 1000 + 60_000
    forged = {
        "unsigned": json.dumps({"body": make_info(instance_id="unsigned").model_dump_json()}),
        "bad-sig": json.dumps(
            {"body": make_info(instance_id="bad-sig").model_dump_json(), "sig": "00" * 32}
        ),
        # A genuine signed record replayed under an id of the forger's choosing.
        "replayed": encode_record(make_info(instance_id="genuine"), TOKEN),
        "garbage": "{not json",
    }
    for instance_id, raw in forged.items():
        await client.set(keys.registry_instance("trading", instance_id), raw, px=60_000)
        await client.zadd(keys.registry_index("trading"), {instance_id: expiry})

    for discovery in (
        await parts.discovery(connect(redis_url)),
        await parts.discovery(connect(redis_url, decode_responses=True), services=["trading"]),
    ):
        assert await live_ids(discovery) == {"genuine"}
        assert {i.instance_id for i in discovery.all_instances()["trading"]} == {"genuine"}
        assert discovery.instances("trading") == (genuine.info,)

    signature = sample(metrics, "astra_registry_rejected_records_total", reason="signature")
    invalid = sample(metrics, "astra_registry_rejected_records_total", reason="invalid")
    assert signature >= 3 * 2  # wrong-token, unsigned, bad-sig; seen by both discoveries
    assert invalid >= 2 * 2  # replayed, garbage


# --- 8. readiness -------------------------------------------------------------------------


async def test_only_ready_instances_are_routed_to(
    redis_url: str,
    connect: Callable[..., aioredis.Redis],
    parts: Parts,
    metrics: CollectorRegistry,
) -> None:
    client = connect(redis_url)
    discovery = await parts.discovery(connect(redis_url))
    views: list[View] = []
    discovery.add_listener(views.append)

    registrar = await parts.registrar(client, make_info(status="starting"))
    await poll_until(lambda: _listed(discovery), "the starting instance to be listed")
    assert discovery.instances("trading") == ()
    assert sample(metrics, "astra_registry_instances", service="trading", status="starting") == 1
    assert views[-1]["trading"][0].status == "starting"

    await registrar.set_status("ready")
    await poll_until(lambda: _has(discovery, "i-1"), "the ready instance to be routed to")
    assert sample(metrics, "astra_registry_instances", service="trading", status="ready") == 1

    await registrar.set_status("draining")
    await discovery.refresh()  # the very next refresh stops routing to it
    assert discovery.instances("trading") == ()
    assert discovery.all_instances()["trading"][0].status == "draining"
    assert sample(metrics, "astra_registry_instances", service="trading", status="ready") == 0
    assert sample(metrics, "astra_registry_instances", service="trading", status="draining") == 1
    assert [v["trading"][0].status for v in views] == ["starting", "ready", "draining"]
    assert "status=draining" in repr(registrar)


async def _listed(discovery: Discovery) -> bool:
    return bool(discovery.all_instances().get("trading"))
