"""Settings every service process shares; each service subclasses it with its defaults."""

from __future__ import annotations

from pydantic import model_validator

from backbone.http_server import HttpLimits
from backbone.process import ProcessSettings


class ServiceSettings(ProcessSettings):
    """`ASTRA_*` environment variables (the shared ones live in `ProcessSettings`)."""

    service: str = "service"
    database_url: str = ""  # default: SQLite file under run_dir/data
    # The services' HTTP server limits (`ASTRA_HTTP__MAX_HEADER_BYTES`, ...): the same
    # defaults as the gateway's edge, without a per-address cap (every request comes
    # from the gateway's address).
    http: HttpLimits = HttpLimits()

    def process_name(self) -> str:
        return self.service

    @model_validator(mode="after")
    def _service_defaults(self) -> ServiceSettings:
        if not self.database_url:
            path = self.run_dir / "data" / f"{self.service}.db"
            object.__setattr__(self, "database_url", f"sqlite+aiosqlite:///{path}")
        return self
