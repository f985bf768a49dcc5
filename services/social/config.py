"""Social settings: `ASTRA_*` variables over the shared service settings."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from backbone.service import ServiceSettings


class Settings(ServiceSettings):
    service: str = "social"
    port: int = Field(default=8105, ge=0, le=65535)
    global_feed_size: int = Field(default=10_000, ge=10)  # entries kept, newest
    user_feed_size: int = Field(default=1_000, ge=10)  # entries kept per user, newest
    entry_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)  # entries and idle user feeds


@lru_cache
def get_settings() -> Settings:
    return Settings()
