"""The processes the image runs, by role: what each executes, listens on and connects as.

One table, read by the entrypoint (`run.py`), the healthcheck (`health.py`), the
bootstrap (who gets which secret) and the compose checks in tests/containers.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.services import SERVICES


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    module: str  # `python3 -m <module>`
    uid: int  # its own user: a role can read its own secrets and no other role's
    port: int | None = None  # its HTTP port inside the container (health-checked there)
    redis_user: str | None = None  # the Redis ACL user it connects as (stack/redis_acl.py)
    health_path: str = "/health/ready"
    registers: bool = False  # keeps a registry record: an instance id and a public URL
    operator: bool = False  # holds the operator token (the gateway)
    args: tuple[str, ...] = ()  # before the command's own: listen beyond the container


# Inside a container every process may take the same port: each has its own address.
SERVICE_PORT = 8000
GATEWAY_PORT = 8080
SECRETS_DIR = "/run/astra-secrets"  # the bootstrap's volume: <role>/env, redis/users.acl

ROLES: dict[str, Role] = {
    "gateway": Role(
        "gateway", "gateway", 10010, GATEWAY_PORT, "gateway", registers=True, operator=True
    ),
    **{
        service: Role(
            service, f"services.{service}", 10011 + i, SERVICE_PORT, service, registers=True
        )
        for i, service in enumerate(SERVICES)
    },
    "sd": Role("sd", "stack.observe.sd", 10020, 9099, "observe", args=("--host", "0.0.0.0")),
    "faultproxy": Role(
        "faultproxy",
        "chaos.faultproxy",
        10021,
        8474,
        health_path="/version",
        args=("-host", "0.0.0.0"),
    ),
    "locust": Role("locust", "locust", 10022),
}
