"""The nft service: mints one reward token per unlocked achievement, and shows collections."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry

from backbone.service import (
    ConsumerSpec,
    ContextSpec,
    OutboxParts,
    ServiceSpec,
    create_service_app,
)
from contracts.gamification import AchievementUnlocked
from contracts.nft import NftMinted
from services.nft.config import Settings, get_settings
from services.nft.deps import NftContext
from services.nft.handlers import GROUP, Minter
from services.nft.models import metadata
from services.nft.routes import router
from services.nft.store import NftStore


async def _build(parts: OutboxParts[Settings]) -> NftContext:
    return NftContext(NftStore(parts.sessions, parts.outbox), parts.relay)


def _consumers(ctx: NftContext) -> list[ConsumerSpec]:
    minter = Minter(ctx.store, ctx.relay)
    return [ConsumerSpec(GROUP, {AchievementUnlocked: minter.on_unlocked})]


SPEC = ServiceSpec(
    name="nft",
    description="Reward tokens minted once per user and achievement.",
    context=ContextSpec.with_outbox(metadata, _build),
    routers=[router],
    consumers=_consumers,
    published=[NftMinted],
)


def create_app(settings: Settings | None = None, registry: CollectorRegistry = REGISTRY) -> FastAPI:
    return create_service_app(SPEC, settings or get_settings(), registry=registry)
