"""The image's entrypoint: `python3 -m stack.containers.run <role> [args...]`.

Reads the role's secrets (`<secrets dir>/<role>/env`, written by the bootstrap), fills
in what a container knows and a settings default cannot (its address, a stable
instance id), then replaces itself with the role's process (exec: the process gets
the signals, and its exit code is the container's). `bootstrap` runs the bootstrap
itself; any other first word is run as given (`run python3 -c ...`).

    ASTRA_INSTANCE_ID   default <role>-<container hostname>: stable across restarts of
                        the same container, so a restarted consumer drains its own
                        pending entries under its old name
    ASTRA_PUBLIC_URL    default http://<container address>:<port>: what the registry
                        advertises, reachable from every container on the network; when
                        given (a proxy in front), ASTRA_METRICS_URL is that address
    ASTRA_REDIS_ADDRESS host:port to reach Redis at instead, same credentials
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from stack.chaos import via
from stack.containers.roles import ROLES, SECRETS_DIR, Role


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines; blank lines and # comments skipped."""
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"{path}:{number}: not KEY=value")
        env[key] = value
    return env


def container_address() -> str:
    """The address other containers reach this one at (the first non-loopback one)."""
    hostname = socket.gethostname()
    for family, *_, sockaddr in socket.getaddrinfo(hostname, None, socket.AF_INET):
        address = str(sockaddr[0])
        if family == socket.AF_INET and not address.startswith("127."):
            return address
    return hostname


def role_environment(
    role: Role, given: Mapping[str, str], secrets: Mapping[str, str]
) -> dict[str, str]:
    """The process's environment: the secrets, then what the container says, then what
    was set explicitly (compose `environment:` wins over every default here)."""
    env = {**secrets, **given}
    if role.port is not None:
        if role.name == "gateway":
            env.setdefault("ASTRA_GATEWAY_HOST", "0.0.0.0")
            env.setdefault("ASTRA_GATEWAY_PORT", str(role.port))
        else:
            env.setdefault("ASTRA_HOST", "0.0.0.0")
            env.setdefault("ASTRA_PORT", str(role.port))
    if role.registers:
        env.setdefault("ASTRA_INSTANCE_ID", f"{role.name}-{socket.gethostname()}")
        url_key = "ASTRA_GATEWAY_PUBLIC_URL" if role.name == "gateway" else "ASTRA_PUBLIC_URL"
        direct = f"http://{container_address()}:{role.port}"
        if env.get(url_key):  # a proxy in front (the chaos layer): scraped directly
            env.setdefault("ASTRA_METRICS_URL", direct)
        env.setdefault(url_key, direct)
    # ASTRA_REDIS_ADDRESS (host:port): the same user and password, another way there
    # (the chaos layer's <role>_redis proxy).
    if (address := env.get("ASTRA_REDIS_ADDRESS")) and env.get("ASTRA_REDIS_URL"):
        env["ASTRA_REDIS_URL"] = via(env["ASTRA_REDIS_URL"], address)
    return env


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(f"usage: run <role> [args]; roles: {', '.join(ROLES)}, bootstrap", file=sys.stderr)
        return 2
    name, rest = args[0], args[1:]
    if name == "bootstrap":
        from stack.containers.bootstrap import main as bootstrap

        return bootstrap(rest)
    if name == "monitoring-config":
        from stack.containers.monitoring import main as monitoring_config

        return monitoring_config(rest)
    role = ROLES.get(name)
    if role is None:
        os.execvp(name, [name, *rest])  # noqa: S606 - a plain command, to debug a container
    secrets_file = Path(os.environ.get("ASTRA_SECRETS_DIR", SECRETS_DIR)) / role.name / "env"
    try:
        secrets = read_env_file(secrets_file)
    except FileNotFoundError:
        # Kubernetes hands the same variables in through the environment (a Secret's
        # envFrom): only a role that needs them and got them neither way is refused.
        secrets = {}
        needs = role.redis_user is not None or role.registers
        if needs and "ASTRA_REDIS_URL" not in os.environ:
            print(f"{secrets_file}: missing: did the bootstrap run?", file=sys.stderr)
            return 2
    except (OSError, ValueError) as e:
        print(f"{secrets_file}: {e}", file=sys.stderr)
        return 2
    env = role_environment(role, os.environ, secrets)
    argv_out = [sys.executable, "-m", role.module, *role.args, *rest]
    os.execvpe(argv_out[0], argv_out, env)  # noqa: S606 - our interpreter, our module
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
