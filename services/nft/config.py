"""NFT settings: `ASTRA_*` variables over the shared service settings."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from backbone.service import ServiceSettings


class Settings(ServiceSettings):
    service: str = "nft"
    port: int = Field(default=8104, ge=0, le=65535)


@lru_cache
def get_settings() -> Settings:
    return Settings()
