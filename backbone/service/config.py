"""Settings every service process shares; each service subclasses it with its defaults."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backbone.config import BusSettings, RegistrySettings, TelemetrySettings, require_secret


class ServiceSettings(BaseSettings):
    """`ASTRA_*` environment variables; nested parts use `__` (ASTRA_BUS__BATCH_SIZE=200)."""

    model_config = SettingsConfigDict(
        env_prefix="ASTRA_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    service: str = "service"
    version: str = "0.1.0"
    env: Literal["dev", "test", "prod"] = "dev"
    instance_id: str = ""  # stable per slot (`trading-1`) so a restart drains its own pending
    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=0, le=65535)
    public_url: str = ""  # what the registry advertises; default http://host:port
    redis_url: str = "redis://127.0.0.1:6390/0"
    database_url: str = ""  # default: SQLite file under run_dir/data
    run_dir: Path = Path("var")
    jwks_url: str = ""  # users service JWKS; default discovered through the registry
    jwt_issuer: str = "astratrade-users"
    jwt_audience: str = "astratrade"
    bus: BusSettings = BusSettings()
    registry: RegistrySettings = RegistrySettings()
    telemetry: TelemetrySettings = TelemetrySettings()

    @model_validator(mode="after")
    def _defaults_and_secrets(self) -> ServiceSettings:
        if not self.instance_id:
            object.__setattr__(
                self, "instance_id", f"{self.service}-{socket.gethostname()}-{os.getpid()}"
            )
        if not self.public_url:
            object.__setattr__(self, "public_url", f"http://{self.host}:{self.port}")
        if not self.database_url:
            path = self.run_dir / "data" / f"{self.service}.db"
            object.__setattr__(self, "database_url", f"sqlite+aiosqlite:///{path}")
        require_secret("ASTRA_REGISTRY__TOKEN", self.registry.token)
        return self
