"""The image's entrypoint and bootstrap, without an engine: what each role is handed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from stack.containers.bootstrap import bootstrap, role_env
from stack.containers.roles import ROLES
from stack.containers.run import read_env_file, role_environment
from stack.redis_acl import stack_users
from stack.secrets import SecretsError, StackSecrets, load_or_create


def test_bootstrap_hands_each_role_only_its_own_secrets(tmp_path: Path) -> None:
    bootstrap(tmp_path, generate=True)
    secrets = load_or_create(
        tmp_path / "secrets.json", [u.name for u in stack_users()], generate=False
    )
    trading = read_env_file(tmp_path / "trading" / "env")
    assert trading["ASTRA_REDIS_URL"].startswith("redis://trading:")
    assert trading["ASTRA_REDIS_URL"].endswith("@redis:6379/0")
    assert secrets.redis_password("trading") in trading["ASTRA_REDIS_URL"]
    assert trading["ASTRA_REGISTRY__TOKEN"] == secrets.registry_token
    assert "ASTRA_GATEWAY_OPERATOR_TOKEN" not in trading  # the gateway's alone
    assert read_env_file(tmp_path / "gateway" / "env")["ASTRA_GATEWAY_OPERATOR_TOKEN"]
    for other in ("users", "nft", "social", "gateway"):
        assert secrets.redis_password("trading") not in (tmp_path / other / "env").read_text()
    mode = stat.S_IMODE((tmp_path / "trading" / "env").stat().st_mode)
    assert mode == 0o400
    if os.geteuid() == 0:  # as in the bootstrap container: owned by the role's uid
        assert (tmp_path / "trading" / "env").stat().st_uid == ROLES["trading"].uid
        assert (tmp_path / "secrets.json").stat().st_uid == 0
    acl = (tmp_path / "redis" / "users.acl").read_text()
    assert secrets.redis_password("trading") not in acl  # hashes only
    assert "user default off" in acl


def test_a_second_bootstrap_keeps_the_secrets(tmp_path: Path) -> None:
    bootstrap(tmp_path, generate=True)
    first = (tmp_path / "gateway" / "env").read_text()
    bootstrap(tmp_path, generate=True)
    assert (tmp_path / "gateway" / "env").read_text() == first


def test_prod_never_generates(tmp_path: Path) -> None:
    with pytest.raises(SecretsError, match=r"secrets\.json: missing"):
        bootstrap(tmp_path, generate=False)


def test_postgres_profile_gives_trading_its_url(tmp_path: Path) -> None:
    bootstrap(tmp_path, generate=True, postgres=True)
    password = (tmp_path / "postgres" / "password").read_text().strip()
    url = read_env_file(tmp_path / "trading" / "env")["ASTRA_DATABASE_URL"]
    assert url == f"postgresql+asyncpg://astratrade:{password}@postgres:5432/astratrade"
    assert "ASTRA_DATABASE_URL" not in read_env_file(tmp_path / "nft" / "env")


def test_the_environment_a_service_runs_with() -> None:
    secrets = {"ASTRA_REDIS_URL": "redis://trading:pw@redis:6379/0", "ASTRA_REGISTRY__TOKEN": "t"}
    env = role_environment(ROLES["trading"], {"PATH": "/usr/bin"}, secrets)
    assert env["ASTRA_HOST"] == "0.0.0.0"
    assert env["ASTRA_PORT"] == "8000"
    assert env["ASTRA_INSTANCE_ID"].startswith("trading-")
    assert env["ASTRA_PUBLIC_URL"].startswith("http://")
    assert env["ASTRA_PUBLIC_URL"].endswith(":8000")
    assert "ASTRA_METRICS_URL" not in env  # scraped where it is reached


def test_behind_a_proxy_it_is_scraped_directly_and_reaches_redis_through_its_own() -> None:
    secrets = {"ASTRA_REDIS_URL": "redis://trading:pw@redis:6379/0"}
    given = {"ASTRA_PUBLIC_URL": "http://toxiproxy:18102", "ASTRA_REDIS_ADDRESS": "toxiproxy:16102"}
    env = role_environment(ROLES["trading"], given, secrets)
    assert env["ASTRA_PUBLIC_URL"] == "http://toxiproxy:18102"
    assert env["ASTRA_METRICS_URL"].endswith(":8000")
    assert env["ASTRA_REDIS_URL"] == "redis://trading:pw@toxiproxy:16102/0"


def test_the_gateway_takes_its_own_variable_names() -> None:
    env = role_environment(ROLES["gateway"], {}, {})
    assert env["ASTRA_GATEWAY_HOST"] == "0.0.0.0"
    assert env["ASTRA_GATEWAY_PORT"] == "8080"
    assert env["ASTRA_GATEWAY_PUBLIC_URL"].endswith(":8080")


def test_an_env_file_line_that_is_not_key_value_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "env"
    bad.write_text("# comment\nGOOD=1\nnot a pair\n")
    with pytest.raises(ValueError, match=r"env:3: not KEY=value"):
        read_env_file(bad)


def test_every_role_env_of_the_table_is_complete() -> None:
    secrets = StackSecrets(
        registry_token="r" * 40,
        operator_token="o" * 40,
        redis_passwords={u.name: "p" * 40 for u in stack_users()},
    )
    for role in ROLES.values():
        env = role_env(role, secrets, "redis://redis:6379/0")
        assert ("ASTRA_REDIS_URL" in env) == (role.redis_user is not None), role.name
        assert ("ASTRA_REGISTRY__TOKEN" in env) == (role.registers or role.name == "sd"), role.name


def test_the_discovery_and_fault_proxy_listen_beyond_their_container() -> None:
    # Their own defaults are 127.0.0.1: Prometheus in another container saw no target.
    assert ROLES["sd"].args == ("--host", "0.0.0.0")
    assert ROLES["faultproxy"].args == ("-host", "0.0.0.0")
