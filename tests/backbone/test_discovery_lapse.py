"""Discovery's registry defences: lapsed (expired, not deregistered) instances and the
stale-cache switch, against real redis-servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from backbone import keys
from backbone.config import RegistrySettings
from backbone.errors import RegistryError
from backbone.registry import Discovery, InstanceInfo, Registrar
from stack.redis_server import RedisServer
from tests.support.poll import poll_until

pytestmark = pytest.mark.integration

TOKEN = "test-registry-token"
GRACE = 1.5
FAST = RegistrySettings(
    heartbeat_seconds=0.2,
    ttl_seconds=0.6,
    poll_seconds=0.1,
    token=TOKEN,
    expired_grace_seconds=GRACE,
)


def _info(instance_id: str = "trading-1") -> InstanceInfo:
    return InstanceInfo(
        service="trading",
        instance_id=instance_id,
        url="http://127.0.0.1:8102",
        version="1",
        status="ready",
    )


@pytest.fixture
async def opened() -> AsyncIterator[list[Any]]:
    parts: list[Any] = []
    yield parts
    for part in reversed(parts):
        await part.aclose()


def _client(url: str, parts: list[Any]) -> aioredis.Redis:
    client = aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    parts.insert(0, client)  # closed last
    return client


async def _start(parts: list[Any], part: Registrar | Discovery) -> Any:
    parts.append(part)
    await part.start()
    return part


def _stop_beating(registrar: Registrar) -> None:
    """As a process that lost its own path to Redis: no more beats, no deregistration."""
    task, registrar._task = registrar._task, None  # aclose() then only deletes the record
    assert task is not None
    task.cancel()


def _ids(instances: tuple[InstanceInfo, ...]) -> set[str]:
    return {i.instance_id for i in instances}


async def test_an_expired_record_lapses_for_the_grace_then_goes(
    redis_url: str, opened: list[Any]
) -> None:
    metrics = CollectorRegistry()
    discovery: Discovery = await _start(
        opened, Discovery(_client(redis_url, opened), FAST, services=["trading"], registry=metrics)
    )
    registrar = await _start(opened, Registrar(_client(redis_url, opened), _info(), FAST))
    await poll_until(lambda: _async(bool(discovery.instances("trading"))), "discovered")
    assert discovery.lapsed("trading") == ()

    _stop_beating(registrar)
    await poll_until(lambda: _async(not discovery.instances("trading")), "the record to expire")
    # Not live any more, but kept as lapsed: the gateway may still route to it.
    assert _ids(discovery.lapsed("trading")) == {"trading-1"}
    await poll_until(
        lambda: _async(
            metrics.get_sample_value("astra_registry_instances_lapsed", {"service": "trading"}) == 1
        ),
        "the lapsed gauge",
    )
    await poll_until(
        lambda: _async(not discovery.lapsed("trading")), "the grace to end", timeout=GRACE + 2
    )
    await poll_until(  # the gauge follows at the next refresh
        lambda: _async(
            metrics.get_sample_value("astra_registry_instances_lapsed", {"service": "trading"}) == 0
        ),
        "the lapsed gauge to clear",
    )


async def test_following_every_service_an_expired_service_name_lapses_its_instances(
    redis_url: str, opened: list[Any]
) -> None:
    """The view of every service (`services=None`, what the scrape targets use) reads
    the names from the services index. A name that expires there while its instance's
    record is still ahead (a blind instance beat landed, the service beat after it did
    not) lapses the instance; it is not taken for deregistered."""
    client = _client(redis_url, opened)
    discovery: Discovery = await _start(
        opened, Discovery(client, FAST, services=None, registry=CollectorRegistry())
    )
    registrar = await _start(opened, Registrar(_client(redis_url, opened), _info(), FAST))
    await poll_until(lambda: _async(bool(discovery.all_instances().get("trading"))), "discovered")
    _stop_beating(registrar)
    # The instance beat once more on its own: its record is good for a while yet, while
    # the service's name has already expired from the index.
    await client.zadd(keys.registry_index("trading"), {"trading-1": 2**52})
    await client.zrem(keys.REGISTRY_SERVICES, "trading")
    await poll_until(
        lambda: _async("trading" not in discovery.all_instances()), "the name to expire"
    )
    assert _ids(discovery.all_lapsed().get("trading", ())) == {"trading-1"}


async def test_a_deregistered_instance_is_gone_at_once(redis_url: str, opened: list[Any]) -> None:
    discovery: Discovery = await _start(
        opened,
        Discovery(
            _client(redis_url, opened), FAST, services=["trading"], registry=CollectorRegistry()
        ),
    )
    registrar = Registrar(_client(redis_url, opened), _info(), FAST)
    await registrar.start()
    await poll_until(lambda: _async(bool(discovery.instances("trading"))), "discovered")
    await registrar.aclose()  # graceful shutdown: deletes its record
    await discovery.refresh()
    assert discovery.instances("trading") == ()
    assert discovery.lapsed("trading") == ()
    await asyncio.sleep(FAST.ttl_seconds)  # past its old expiry too: still nothing
    assert discovery.lapsed("trading") == ()


async def test_drop_ends_the_grace_and_a_new_beat_makes_it_live_again(
    redis_url: str, opened: list[Any]
) -> None:
    discovery: Discovery = await _start(
        opened,
        Discovery(
            _client(redis_url, opened), FAST, services=["trading"], registry=CollectorRegistry()
        ),
    )
    registrar = await _start(opened, Registrar(_client(redis_url, opened), _info(), FAST))
    await poll_until(lambda: _async(bool(discovery.instances("trading"))), "discovered")
    _stop_beating(registrar)
    await poll_until(lambda: _async(bool(discovery.lapsed("trading"))), "lapsed")
    assert not discovery.drop("trading", "trading-2")  # not lapsed: nothing to do
    assert discovery.drop("trading", "trading-1")
    assert discovery.lapsed("trading") == ()
    await discovery.refresh()
    assert discovery.lapsed("trading") == ()  # stays dropped

    back = await _start(opened, Registrar(_client(redis_url, opened), _info(), FAST))
    await poll_until(lambda: _async(bool(discovery.instances("trading"))), "live again")
    assert discovery.instances("trading") == (back.info,)


async def test_no_grace_means_an_expired_record_is_gone(redis_url: str, opened: list[Any]) -> None:
    settings = FAST.model_copy(update={"expired_grace_seconds": 0.0})
    discovery: Discovery = await _start(
        opened,
        Discovery(
            _client(redis_url, opened), settings, services=["trading"], registry=CollectorRegistry()
        ),
    )
    registrar = await _start(opened, Registrar(_client(redis_url, opened), _info(), settings))
    await poll_until(lambda: _async(bool(discovery.instances("trading"))), "discovered")
    _stop_beating(registrar)
    await poll_until(lambda: _async(not discovery.instances("trading")), "the record to expire")
    await discovery.refresh()
    assert discovery.lapsed("trading") == ()


@pytest.mark.parametrize("stale_cache", [True, False])
async def test_stale_cache_switch_keeps_or_empties_the_view_in_an_outage(
    stale_cache: bool,
    redis_factory: Callable[..., RedisServer],
    opened: list[Any],
) -> None:
    server = redis_factory()
    settings = FAST.model_copy(update={"stale_cache": stale_cache})
    discovery: Discovery = await _start(
        opened,
        Discovery(
            _client(server.url, opened),
            settings,
            services=["trading"],
            registry=CollectorRegistry(),
        ),
    )
    await _start(opened, Registrar(_client(server.url, opened), _info(), settings))
    await poll_until(lambda: _async(bool(discovery.instances("trading"))), "discovered")

    server.kill()
    with pytest.raises(RegistryError):
        await discovery.refresh()
    assert discovery.stale
    if stale_cache:  # the defence: the last view keeps routing
        assert _ids(discovery.instances("trading")) == {"trading-1"}
    else:  # switched off: an unreadable registry is an empty one
        assert discovery.instances("trading") == ()
        assert discovery.lapsed("trading") == ()
        assert discovery.all_instances() == {"trading": ()}


async def _async(value: bool) -> bool:
    return value
