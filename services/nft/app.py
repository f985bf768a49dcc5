"""The nft service: mints one reward token per unlocked achievement, and shows collections."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry

from backbone.service import ConsumerSpec, Runtime, ServiceSpec, create_service_app
from contracts.gamification import AchievementUnlocked
from contracts.nft import NftMinted
from services.nft.config import Settings, get_settings
from services.nft.handlers import GROUP, Minter
from services.nft.models import metadata
from services.nft.routes import router
from services.nft.store import NftStore


def _consumers(runtime: Runtime) -> list[ConsumerSpec]:
    assert runtime.sessions is not None, "SPEC declares metadata"
    assert runtime.outbox is not None, "SPEC declares outbox=True"
    minter = Minter(NftStore(runtime.sessions, runtime.outbox), runtime.relay)
    return [ConsumerSpec(GROUP, {AchievementUnlocked: minter.on_unlocked})]


SPEC = ServiceSpec(
    name="nft",
    description="Reward tokens minted once per user and achievement.",
    routers=[router],
    metadata=metadata,
    outbox=True,
    consumers=_consumers,
    published=[NftMinted],
)


def create_app(settings: Settings | None = None, registry: CollectorRegistry = REGISTRY) -> FastAPI:
    return create_service_app(SPEC, settings or get_settings(), registry=registry)
