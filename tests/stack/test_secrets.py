"""Per-stack secrets: generated once, 0600, refused when unusable, never generated in prod."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from stack.secrets import SecretsError, load_or_create

ROOT = Path(__file__).resolve().parents[2]
USERS = ("users", "gateway")


def test_first_start_generates_private_distinct_secrets(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    made = load_or_create(path, USERS, generate=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = [made.registry_token, made.operator_token, *made.redis_passwords.values()]
    assert len(set(values)) == len(values)
    assert all(len(v) >= 32 for v in values)
    # The second start reads the same secrets back: restarts keep working.
    again = load_or_create(path, USERS, generate=True)
    assert again == made
    # A new Redis user gets a password; nothing else changes.
    more = load_or_create(path, (*USERS, "nft"), generate=True)
    assert more.registry_token == made.registry_token
    assert set(more.redis_passwords) == {*USERS, "nft"}


def test_two_stacks_never_share_a_secret(tmp_path: Path) -> None:
    one = load_or_create(tmp_path / "a.json", USERS, generate=True)
    two = load_or_create(tmp_path / "b.json", USERS, generate=True)
    assert one.registry_token != two.registry_token
    assert one.operator_token != two.operator_token


def test_prod_never_generates(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    with pytest.raises(SecretsError, match="missing; ASTRA_ENV=prod never generates"):
        load_or_create(path, USERS, generate=False)
    assert not path.exists()
    load_or_create(path, ("users",), generate=True)
    with pytest.raises(SecretsError, match=r"secrets.json: redis_passwords.gateway: missing"):
        load_or_create(path, USERS, generate=False)


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"registry_token": "short", "operator_token": "o" * 40}, "registry_token: must be at"),
        ({"registry_token": 7, "operator_token": "o" * 40}, "registry_token: must be a string"),
        ({"registry_token": "r" * 40, "operator_token": "o" * 40, "redis_passwords": []}, "object"),
    ],
)
def test_an_unusable_file_is_refused_with_file_field_and_reason(
    tmp_path: Path, doc: dict[str, object], reason: str
) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    with pytest.raises(SecretsError, match=reason) as caught:
        load_or_create(path, USERS, generate=True)
    assert str(path) in str(caught.value)


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    load_or_create(path, USERS, generate=True)
    path.chmod(0o644)
    with pytest.raises(SecretsError, match="mode 0644"):
        load_or_create(path, USERS, generate=True)


def test_astra_up_in_prod_without_secrets_refuses_to_start(tmp_path: Path) -> None:
    run_dir = tmp_path / "var"
    done = subprocess.run(
        [sys.executable, "-m", "stack.cli", "up"],
        env={
            **os.environ,
            "ASTRA_ENV": "prod",
            "ASTRA_RUN_DIR": str(run_dir),
            "ASTRA_PORT_OFFSET": "23500",
            "PYTHONPATH": str(ROOT),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{run_dir / 'secrets.json'}: missing" in done.stdout
    assert not (run_dir / "redis").exists()  # nothing started


@pytest.mark.parametrize("module", ["services.users", "gateway"])
def test_a_process_without_its_secret_refuses_to_start(tmp_path: Path, module: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRA_")}
    done = subprocess.run(
        [sys.executable, "-m", module],
        env={
            **env,
            "ASTRA_RUN_DIR": str(tmp_path),
            "ASTRA_PORT": "0",
            "ASTRA_GATEWAY_PORT": "0",
            "PYTHONPATH": str(ROOT),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "ASTRA_REGISTRY__TOKEN is not set" in done.stderr
