"""The stack's Redis users, against a real redis-server started with the generated ACL file."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from backbone import keys
from contracts.services import SERVICES
from contracts.trading import TradeExecuted
from stack.redis_acl import RedisUser, acl_file, stack_users, url_for
from stack.redis_server import RedisServer
from stack.secrets import write_private

USERS = {user.name: user for user in stack_users()}
PASSWORDS = {name: f"password-of-{name}-0123456789abcdef" for name in USERS}
EVERY_STREAM = sorted(
    {et.stream_key for u in USERS.values() for et in u.publishes}
    | {et.stream_key for u in USERS.values() for c in u.consumes for et in c.events}
)
FORBIDDEN = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "*"),
    ("CONFIG", "SET", "appendonly", "no"),
    ("KEYS", "*"),
    ("DEBUG", "SLEEP", "0"),
    ("SCRIPT", "FLUSH"),
    ("ACL", "WHOAMI"),
    ("ACL", "SETUSER", "eve", "on", ">x", "+@all", "~*"),
    ("SHUTDOWN", "NOSAVE"),
    ("MODULE", "LIST"),
    ("FUNCTION", "FLUSH"),
    ("MONITOR",),
]
SCANNERS = {"exporter", "operator"}  # `-check-streams=astra.*` finds streams with SCAN


@pytest.fixture
def acl_redis(redis_factory: Callable[..., RedisServer], tmp_path: Path) -> RedisServer:
    aclfile = tmp_path / "users.acl"
    write_private(aclfile, acl_file(USERS.values(), PASSWORDS))
    # DEBUG enabled so that only the ACL can refuse it (otherwise Redis' own
    # enable-debug-command default would, and the test would prove nothing).
    return redis_factory(aclfile=aclfile, extra_args=("--enable-debug-command", "yes"))


@pytest.fixture
def connect(acl_redis: RedisServer) -> Iterator[Callable[[str], redis.Redis]]:
    clients: list[redis.Redis] = []

    def make(user: str) -> redis.Redis:
        client = redis.Redis.from_url(url_for(acl_redis.url, user, PASSWORDS[user]))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_no_anonymous_access_and_no_guessing(acl_redis: RedisServer) -> None:
    with pytest.raises(AuthenticationError):
        redis.Redis.from_url(acl_redis.url).ping()
    with pytest.raises(AuthenticationError):
        redis.Redis.from_url(url_for(acl_redis.url, "default", "")).ping()
    with pytest.raises(AuthenticationError):
        redis.Redis.from_url(url_for(acl_redis.url, "trading", "dev-registry-token")).ping()


@pytest.mark.parametrize("user", sorted(USERS))
def test_no_user_may_run_dangerous_commands(
    connect: Callable[[str], redis.Redis], user: str
) -> None:
    client = connect(user)
    assert client.ping()
    for command in [*FORBIDDEN, *([] if user in SCANNERS else [("SCAN", "0")])]:
        with pytest.raises(NoPermissionError):
            client.execute_command(*command)


@pytest.mark.parametrize(
    "name", sorted(n for n in USERS if USERS[n].publishes or USERS[n].consumes)
)
def test_each_user_adds_to_its_own_streams_only(
    connect: Callable[[str], redis.Redis], name: str
) -> None:
    user, client = USERS[name], connect(name)
    own = {et.stream_key for et in user.publishes}
    for stream in EVERY_STREAM:
        if stream in own:
            assert client.execute_command("XADD", stream, "*", keys.ENVELOPE_FIELD, "{}")
        else:
            with pytest.raises(NoPermissionError):
                client.execute_command("XADD", stream, "*", keys.ENVELOPE_FIELD, "{}")
            # A script is held to the same rules as the client running it.
            script = "return redis.call('XADD', ARGV[1], '*', 'envelope', '{}')"
            with pytest.raises(ResponseError, match="can't access"):
                client.execute_command("EVAL", script, 0, stream)


def test_consumers_read_and_ack_but_cannot_write_what_they_consume(
    connect: Callable[[str], redis.Redis],
) -> None:
    stream = TradeExecuted.stream_key
    entry = connect("trading").execute_command("XADD", stream, "*", keys.ENVELOPE_FIELD, "{}")
    for name in ("gamification", "social"):
        [consumes] = [c for c in USERS[name].consumes if TradeExecuted in c.events]
        client = connect(name)
        client.xgroup_create(stream, consumes.group, id="0")
        [[_, [(read_id, _fields)]]] = client.xreadgroup(consumes.group, "c-1", {stream: ">"})
        assert read_id == entry
        assert client.xack(stream, consumes.group, read_id) == 1
        client.xadd(keys.dead_letter_stream(stream), {"reason": "test"})  # its DLQ: allowed
        marker = keys.processed_marker(stream, consumes.group, "e-1")
        assert client.set(marker, "1", ex=60)
        with pytest.raises(NoPermissionError):  # another group's markers are not its own
            client.set(keys.processed_marker(stream, "other_group", "e-1"), "1")
        with pytest.raises(NoPermissionError):
            client.xadd(stream, {keys.ENVELOPE_FIELD: "{}"})


@pytest.mark.parametrize("name", SERVICES)
def test_registry_writes_are_for_the_own_service_only(
    connect: Callable[[str], redis.Redis], name: str
) -> None:
    client = connect(name)
    assert client.set(keys.registry_instance(name, f"{name}-1"), "record", px=1000)
    assert client.zadd(keys.REGISTRY_SERVICES, {name: 1})
    for other in SERVICES:
        if other != name:
            with pytest.raises(NoPermissionError):
                client.set(keys.registry_instance(other, "evil-0"), "record")
            with pytest.raises(NoPermissionError):
                client.zadd(keys.registry_index(other), {"evil-0": 1})
            assert client.get(keys.registry_instance(other, "x")) is None  # reading is fine


def test_data_keys_belong_to_their_service(connect: Callable[[str], redis.Redis]) -> None:
    assert connect("gamification").set(f"{keys.PREFIX}:gamification:user:u1", "1")
    assert connect("social").set(f"{keys.PREFIX}:social:feed:global", "1") is not None
    for name in ("users", "trading", "nft", "social", "gateway"):
        with pytest.raises(NoPermissionError):
            connect(name).set(f"{keys.PREFIX}:gamification:user:u1", "999")
    with pytest.raises(NoPermissionError):
        connect("gamification").set(keys.rate_limit("auth", "ip:1.2.3.4"), "0")


def test_read_only_users_write_nothing(connect: Callable[[str], redis.Redis]) -> None:
    connect("trading").xadd(TradeExecuted.stream_key, {keys.ENVELOPE_FIELD: "{}"})
    for name in ("observe", "exporter", "operator"):
        client = connect(name)
        for command in [
            ("SET", f"{keys.PREFIX}:registry:services", "x"),
            ("XADD", TradeExecuted.stream_key, "*", "a", "b"),
            ("DEL", TradeExecuted.stream_key),
        ]:
            with pytest.raises(NoPermissionError):
                client.execute_command(*command)
    assert connect("exporter").info()["redis_version"]
    assert connect("exporter").xinfo_stream(TradeExecuted.stream_key)["length"] >= 1
    assert connect("operator").xrange(TradeExecuted.stream_key)
    with pytest.raises(NoPermissionError):  # the exporter sees streams, not the data
        connect("exporter").get(f"{keys.PREFIX}:gamification:user:u1")


@pytest.mark.parametrize("service", SERVICES)
def test_the_acl_follows_the_service_declarations(service: str) -> None:
    """What a service publishes is declared once, in its ServiceSpec; its Redis user matches."""
    spec = importlib.import_module(f"services.{service}.app").SPEC
    user: RedisUser = USERS[service]
    assert {et.stream_key for et in spec.published} == {et.stream_key for et in user.publishes}
    handlers = importlib.import_module(f"services.{service}.handlers") if user.consumes else None
    if handlers is not None:
        assert {c.group for c in user.consumes} == {handlers.GROUP}
