"""Per-stack secrets: made on first start, kept in one 0600 file, never committed.

    <run_dir>/secrets.json   {"registry_token": ..., "operator_token": ...,
                              "redis_passwords": {"users": ..., "gateway": ..., ...}}

`astra up` loads this file, or creates it (and adds what is missing) in dev and
test. With `ASTRA_ENV=prod` it never generates: a missing file, a missing or weak
field, or a file that group or others can read stops the stack before anything
starts, with the file, the field and the reason. There is no well-known default
anywhere: a process started without its secret refuses to start (see the settings
validators in `backbone.service.config` and `gateway.config`).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MIN_LENGTH = 32  # characters; generated ones are 43 (32 random bytes, URL-safe base64)


class SecretsError(RuntimeError):
    """The secrets file cannot be used; the message names the file, the field and why."""


@dataclass(frozen=True)
class StackSecrets:
    registry_token: str  # HMAC key of registry records
    operator_token: str  # bearer credential of the gateway's operator endpoints
    redis_passwords: dict[str, str]  # by Redis ACL user

    def redis_password(self, user: str) -> str:
        return self.redis_passwords[user]


def _new() -> str:
    return secrets.token_urlsafe(32)


def _check(path: Path, field: str, value: object) -> str:
    if not isinstance(value, str):
        raise SecretsError(f"{path}: {field}: must be a string, got {type(value).__name__}")
    if len(value) < MIN_LENGTH:
        raise SecretsError(f"{path}: {field}: must be at least {MIN_LENGTH} characters")
    return value


def load_or_create(path: Path, redis_users: Iterable[str], *, generate: bool) -> StackSecrets:
    """The stack's secrets from `path`; what is missing is made only when `generate`."""
    users = list(redis_users)
    doc: dict[str, object] = {}
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SecretsError(
                f"{path}: mode {mode:04o}: group and others must not read it (chmod 600)"
            )
        try:
            loaded = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise SecretsError(f"{path}: not JSON: {e}") from e
        if not isinstance(loaded, dict):
            raise SecretsError(f"{path}: must be a JSON object")
        doc = loaded
    elif not generate:
        raise SecretsError(f"{path}: missing; ASTRA_ENV=prod never generates secrets")
    changed = False
    for field in ("registry_token", "operator_token"):
        if field not in doc:
            if not generate:
                raise SecretsError(f"{path}: {field}: missing")
            doc[field] = _new()
            changed = True
        _check(path, field, doc[field])
    passwords = doc.setdefault("redis_passwords", {})
    if not isinstance(passwords, dict):
        raise SecretsError(f"{path}: redis_passwords: must be an object of user -> password")
    for user in users:
        field = f"redis_passwords.{user}"
        if user not in passwords:
            if not generate:
                raise SecretsError(f"{path}: {field}: missing")
            passwords[user] = _new()
            changed = True
        _check(path, field, passwords[user])
    if changed:
        write_private(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return StackSecrets(
        registry_token=str(doc["registry_token"]),
        operator_token=str(doc["operator_token"]),
        redis_passwords={u: str(passwords[u]) for u in users},
    )


def write_private(path: Path, content: str, *, mode: int = 0o600, owner: int | None = None) -> None:
    """Write a file only its owner can read, atomically (no moment at a wider mode);
    then give it `mode` and, as root, `owner` (a uid: the container role it is for)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(content)
    if owner is not None and os.geteuid() == 0:
        os.chown(tmp, owner, 0)
    if mode != 0o600:
        os.chmod(tmp, mode)
    os.replace(tmp, path)
