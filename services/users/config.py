"""Users settings: `ASTRA_*` variables over the shared service settings."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field

from backbone.service import ServiceSettings


class Settings(ServiceSettings):
    service: str = "users"
    port: int = Field(default=8101, ge=0, le=65535)
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=3600)
    # Default: <run_dir>/keys/users-ed25519.pem, shared by every instance on the host.
    signing_key_path: Path | None = None
    # argon2id cost (argon2-cffi's defaults: RFC 9106's low-memory profile).
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)
    # Hashes computed at once; bounds memory (memory_kib each) and keeps the thread pool free.
    argon2_max_concurrency: int = Field(default=4, ge=1)

    @property
    def key_path(self) -> Path:
        return self.signing_key_path or self.run_dir / "keys" / "users-ed25519.pem"


@lru_cache
def get_settings() -> Settings:
    return Settings()
