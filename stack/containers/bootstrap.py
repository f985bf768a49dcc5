"""`python3 -m stack.containers.bootstrap`: the stack's secrets, made once, handed out by role.

The compose stack's one-shot `bootstrap` service runs this as root on the secrets
volume before anything else starts (`depends_on: condition:
service_completed_successfully`), as `astra up` does in var/:

    <dir>/secrets.json      every secret (stack/secrets.py), root only (0600)
    <dir>/redis/users.acl   Redis's --aclfile: hashed passwords only, world-readable
                            (Redis runs as its own user in its image)
    <dir>/<role>/env        KEY=value lines, owned by the role's uid, mode 0400: its own
                            Redis URL with its password, and the tokens it needs
    <dir>/redis-exporter/passwords.json   the exporter's (read-only) Redis password
    <dir>/postgres/password with ASTRA_POSTGRES=true: PostgreSQL's, for its image's
                            user (trading's env then carries the database URL)

Each role runs as its own uid (stack/containers/roles.py), so a container can read
its own secrets and no other role's, although every one mounts the same volume. A
second run keeps what is there (a restarted stack keeps its passwords and tokens)
and adds only what is missing; `ASTRA_ENV=prod` never generates (stack/secrets.py).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets as secrets_module
import sys
from pathlib import Path

from stack.containers.roles import ROLES, SECRETS_DIR, Role
from stack.redis_acl import acl_file, stack_users, url_for
from stack.secrets import SecretsError, StackSecrets, load_or_create, write_private

REDIS_BASE_URL = "redis://redis:6379/0"  # the compose service name; ASTRA_REDIS_BASE_URL wins


def role_env(role: Role, secrets: StackSecrets, redis_base_url: str) -> dict[str, str]:
    """What `role` is given: its Redis URL as its own user, and the tokens it needs."""
    env: dict[str, str] = {}
    if role.redis_user is not None:
        password = secrets.redis_password(role.redis_user)
        env["ASTRA_REDIS_URL"] = url_for(redis_base_url, role.redis_user, password)
    if role.registers or role.redis_user == "observe":  # writes or verifies records
        env["ASTRA_REGISTRY__TOKEN"] = secrets.registry_token
    if role.operator:
        env["ASTRA_GATEWAY_OPERATOR_TOKEN"] = secrets.operator_token
    return env


def _write(path: Path, content: str, mode: int, uid: int) -> None:
    write_private(path, content, mode=mode, owner=uid)


POSTGRES_UID = 999  # the postgres user of the official image
EXPORTER_UID = 59000  # oliver006/redis_exporter's user
POSTGRES_ADDRESS = "postgres:5432/astratrade"


def _postgres_password(directory: Path, *, generate: bool) -> str:
    """The PostgreSQL password, kept in its own file (the server's image reads it)."""
    path = directory / "postgres" / "password"
    if path.exists():
        password = path.read_text().strip()
    elif generate:
        password = secrets_module.token_urlsafe(32)
    else:
        raise SecretsError(f"{path}: missing; ASTRA_ENV=prod never generates secrets")
    _write(path, password + "\n", 0o400, POSTGRES_UID)
    os.chmod(path.parent, 0o755)  # noqa: S103 - a folder; the file in it is 0400
    return password


def bootstrap(
    directory: Path,
    *,
    generate: bool,
    redis_base_url: str = REDIS_BASE_URL,
    postgres: bool = False,
) -> None:
    users = stack_users()
    secrets = load_or_create(directory / "secrets.json", [u.name for u in users], generate=generate)
    _write(directory / "redis" / "users.acl", acl_file(users, secrets.redis_passwords), 0o644, 0)
    os.chmod(directory / "redis", 0o755)  # noqa: S103 - hashes only, read by Redis's user
    # The Redis exporter's image runs as its own uid and reads a JSON file of
    # address -> password (-redis.password-file); its ACL user is read-only.
    exporter = json.dumps({"redis://redis:6379": secrets.redis_password("exporter")})
    _write(directory / "redis-exporter" / "passwords.json", exporter, 0o400, EXPORTER_UID)
    os.chmod(directory / "redis-exporter", 0o755)  # noqa: S103 - the file in it is 0400
    database = ""
    if postgres:
        password = _postgres_password(directory, generate=generate)
        database = f"postgresql+asyncpg://astratrade:{password}@{POSTGRES_ADDRESS}"
    for role in ROLES.values():
        env = role_env(role, secrets, redis_base_url)
        if database and role.name == "trading":
            env["ASTRA_DATABASE_URL"] = database
        lines = "".join(f"{key}={value}\n" for key, value in sorted(env.items()))
        folder = directory / role.name
        _write(folder / "env", lines, 0o400, role.uid)
        if os.geteuid() == 0:
            os.chown(folder, role.uid, 0)
        os.chmod(folder, 0o700)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m stack.containers.bootstrap")
    parser.add_argument("--dir", type=Path, default=Path(SECRETS_DIR))
    args = parser.parse_args(argv)
    try:
        bootstrap(
            args.dir,
            generate=os.environ.get("ASTRA_ENV", "dev") != "prod",
            redis_base_url=os.environ.get("ASTRA_REDIS_BASE_URL", REDIS_BASE_URL),
            postgres=os.environ.get("ASTRA_POSTGRES", "false").lower() in {"1", "true", "yes"},
        )
    except SecretsError as e:
        print(f"bootstrap refused: {e}", file=sys.stderr)
        return 2
    print(f"secrets ready in {args.dir} for {', '.join(ROLES)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
