"""Discovery believes a record only if it is signed with our key *and* points at an
allowed host; the JWKS a service verifies tokens with is found only that way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from backbone.config import RegistrySettings
from backbone.errors import RegistryError
from backbone.registry import Discovery, InstanceInfo, Registrar
from backbone.registry._record import HostPolicy, RecordRejected
from backbone.service.config import ServiceSettings
from backbone.service.runtime import Runtime, ServiceSpec
from tests.support.poll import poll_until

TOKEN = "test-registry-token"
FAST = RegistrySettings(heartbeat_seconds=0.2, ttl_seconds=0.6, poll_seconds=0.1, token=TOKEN)


def users(instance_id: str, url: str) -> InstanceInfo:
    return InstanceInfo(
        service="users", instance_id=instance_id, url=url, version="1", status="ready"
    )


def rejected(metrics: CollectorRegistry, reason: str) -> float:
    value = metrics.get_sample_value("astra_registry_rejected_records_total", {"reason": reason})
    return value or 0.0


# --- pure: the host policy and its setting ------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8001",
        "https://127.8.9.10/x",
        "http://[::1]:8001/",
        "http://localhost:8001",
        "http://LocalHost.:8001",
    ],
)
def test_the_default_policy_allows_loopback(url: str) -> None:
    HostPolicy(RegistrySettings().allowed_hosts).check(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.7:8001",
        "http://evil.example:8001",
        "http://localhost.evil.example/",
        "http://127.0.0.1.nip.io/",  # a name, never resolved
        "http://127.0.0.1@evil.example/",  # what a client really connects to is evil.example
        "http://evil.example@127.0.0.1/",  # user info has no business in a record
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "http://[::2]/",
        "http://127.0.0.1:port/",
    ],
)
def test_the_default_policy_refuses_everything_else(url: str) -> None:
    with pytest.raises(RecordRejected) as refused:
        HostPolicy(RegistrySettings().allowed_hosts).check(url)
    assert refused.value.reason == "host_not_allowed"


def test_container_names_and_networks_can_be_allowed() -> None:
    settings = RegistrySettings(allowed_hosts=("Trading", "users", "10.0.0.0/8", "fd00::/8"))
    assert settings.allowed_hosts == ("trading", "users", "10.0.0.0/8", "fd00::/8")
    policy = HostPolicy(settings.allowed_hosts)
    for host in ("trading", "USERS", "10.1.2.3", "fd00::7"):
        assert policy.allows(host), host
    for host in ("127.0.0.1", "nft", "11.0.0.1", "trading.evil.example"):
        assert not policy.allows(host), host


def test_the_setting_comes_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRA_REGISTRY__TOKEN", TOKEN)
    monkeypatch.setenv("ASTRA_REGISTRY__ALLOWED_HOSTS", '["trading", "10.0.0.0/8", "::1"]')
    assert ServiceSettings().registry.allowed_hosts == ("trading", "10.0.0.0/8", "::1/128")


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ("10.0.0.1/8", "has host bits set"),
        ("300.1.1.1", "not a valid address"),
        ("fe80::1%eth0", "not a valid address"),
        ("bad host", "neither an IP address"),
        ("*.internal", "neither an IP address"),
        ("", "neither an IP address"),
    ],
)
def test_a_bad_entry_is_refused_with_a_clear_error(entry: str, error: str) -> None:
    with pytest.raises(ValidationError, match="allowed_hosts") as refused:
        RegistrySettings(allowed_hosts=(entry,))
    assert error in str(refused.value)
    with pytest.raises(ValidationError):
        RegistrySettings(allowed_hosts=())  # would silently ignore every record


# --- against Redis: forged and misdirected records are never returned ----------------------


@pytest.fixture
async def opened(redis_url: str) -> AsyncIterator[list[Any]]:
    """Registrars, discoveries and clients of one test, closed newest first."""
    parts: list[Any] = []
    yield parts
    for part in reversed(parts):
        await part.aclose()


@pytest.mark.integration
async def test_instances_never_returns_a_record_signed_with_another_key_or_to_another_host(
    redis_url: str, opened: list[Any]
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    opened.append(client)
    metrics = CollectorRegistry()
    forger = FAST.model_copy(update={"token": "the-attackers-own-key"})
    # Signed with our key but pointing outside (a leaked token, a hijacked record).
    outside = users("u-outside", "http://203.0.113.9:8001")
    for info, settings in (
        (users("u-forged", "http://127.0.0.1:9001"), forger),
        (outside, FAST),
        (users("u-good", "http://127.0.0.1:8001"), FAST),
    ):
        registrar = Registrar(client, info, settings, registry=metrics)
        opened.append(registrar)
        await registrar.start()
    discovery = Discovery(client, FAST, services=["users"], registry=metrics)
    opened.append(discovery)
    await discovery.start()

    await poll_until(
        lambda: _rejected_both(discovery, metrics), "both bad records seen and refused"
    )
    assert [i.instance_id for i in discovery.instances("users")] == ["u-good"]
    assert [i.instance_id for i in discovery.all_instances()["users"]] == ["u-good"]
    # Every refresh refuses them again: a later poll never lets them in.
    await discovery.refresh()
    assert [i.instance_id for i in discovery.instances("users")] == ["u-good"]
    assert outside.instance_id not in repr(discovery.all_instances())


async def _rejected_both(discovery: Discovery, metrics: CollectorRegistry) -> bool:
    await discovery.refresh()
    return rejected(metrics, "signature") >= 1 and rejected(metrics, "host_not_allowed") >= 1


@pytest.mark.integration
async def test_a_service_takes_its_jwks_only_from_a_signed_allowed_record(
    redis_url: str, opened: list[Any]
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    opened.append(client)
    bad = [
        (users("u-forged", "http://127.0.0.1:9001"), FAST.model_copy(update={"token": "x" * 12})),
        (users("u-outside", "http://evil.example:8001"), FAST),
    ]
    for info, settings in bad:
        registrar = Registrar(client, info, settings, registry=CollectorRegistry())
        opened.append(registrar)
        await registrar.start()
    settings = ServiceSettings(env="test", redis_url=redis_url, registry=FAST, jwks_url="")
    runtime = Runtime(ServiceSpec(name="probe"), settings, CollectorRegistry())
    opened.append(runtime.redis)

    with pytest.raises(RegistryError, match="no ready users instance"):
        await runtime._jwks_url()

    good = Registrar(client, users("u-good", "http://127.0.0.1:8001/"), FAST)
    opened.append(good)
    await good.start()
    assert await runtime._jwks_url() == "http://127.0.0.1:8001/.well-known/jwks.json"
