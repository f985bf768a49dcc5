"""What `astra up` starts, from `ASTRA_*` variables (one typed object)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.services import SERVICES as SERVICE_NAMES

# Service -> first port, in start order (contracts.services says why that order); the
# gateway comes last. Ports follow the order: users 8101 ... social 8105.
SERVICES: dict[str, int] = {name: 8101 + n for n, name in enumerate(SERVICE_NAMES)}
GATEWAY_PORT = 8000
# The monitoring processes `astra up` starts after the gateway (stack.observe.monitoring).
MONITORING_PORTS: dict[str, int] = {
    "prometheus": 9090,
    "alertmanager": 9093,
    "observe": 9099,  # registry -> Prometheus http_sd targets, alert webhook sink
    "blackbox": 9115,
    "redis-exporter": 9121,
}


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASTRA_", extra="ignore")

    env: Literal["dev", "test", "prod"] = "dev"  # prod: secrets must exist, none is generated
    run_dir: Path = Path("var")
    secrets_file: Path | None = None  # default <run_dir>/secrets.json (stack.secrets)
    # Use this Redis instead of starting our own; its URL carries its credentials and
    # every process uses it as it is (per-process users are then the operator's job).
    redis_url: str = ""
    redis_port: int = 6390
    port_offset: int = Field(default=0, ge=0, le=50_000)  # shifts every port (parallel stacks)
    gateway_replicas: int = Field(default=1, ge=0, le=8)
    ready_timeout: float = 30.0
    restart_backoff_max: float = 30.0
    monitoring: bool = True  # Prometheus, Alertmanager and exporters, when installed
    # `astra up --drill`: Prometheus loads the time-compressed SLO rules (alerts/rules-drill,
    # every window / 60) and scrapes and evaluates every second (docs/observability.md).
    drill: bool = False
    # `astra up --chaos`: the fault proxy (`python -m chaos.faultproxy`) runs as a child
    # and every hop (gateway -> instance, process -> Redis, instance -> PostgreSQL) goes
    # through a named proxy of stack.chaos; monitoring is never proxied.
    chaos: bool = False
    # Given to every service as it is (default: a SQLite file each); in chaos mode a
    # PostgreSQL URL is rewritten per instance to its `<instance>_postgres` proxy.
    database_url: str = ""

    def instances(self, service: str) -> int:
        """`ASTRA_INSTANCES_trading=2` runs two trading instances."""
        raw = os.environ.get(f"ASTRA_INSTANCES_{service}") or os.environ.get(
            f"ASTRA_INSTANCES_{service.upper()}", "1"
        )
        return max(0, min(int(raw), 8))

    def service_port(self, service: str, index: int) -> int:
        return SERVICES[service] + 10 * (index - 1) + self.port_offset

    def gateway_port(self, index: int) -> int:
        return GATEWAY_PORT + (index - 1) + self.port_offset

    def monitoring_port(self, name: str) -> int:
        return MONITORING_PORTS[name] + self.port_offset

    @property
    def secrets_path(self) -> Path:
        return self.secrets_file or self.run_dir / "secrets.json"

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port + self.port_offset}/0"
