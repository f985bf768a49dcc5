"""The gamification service: XP, levels, achievements and a leaderboard from executed trades."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry

from backbone.service import ConsumerSpec, ContextSpec, Parts, ServiceSpec, create_service_app
from contracts.gamification import AchievementUnlocked, LevelUp, XpGained
from contracts.trading import TradeExecuted
from services.gamification.config import Settings, get_settings
from services.gamification.deps import GamificationContext
from services.gamification.handlers import GROUP, XpAwarder
from services.gamification.routes import router
from services.gamification.store import GamificationStore


async def _build(parts: Parts[Settings]) -> GamificationContext:
    return GamificationContext(GamificationStore(parts.redis))


def _consumers(ctx: GamificationContext) -> list[ConsumerSpec]:
    awarder = XpAwarder(ctx.store)
    # commit_each: the handler reads the XP the previous trade of the batch added.
    return [ConsumerSpec(GROUP, {TradeExecuted: awarder.on_trade}, commit_each=True)]


SPEC = ServiceSpec(
    name="gamification",
    description="XP, levels, achievements and the leaderboard, earned by executed trades.",
    context=ContextSpec.plain(_build),
    routers=[router],
    consumers=_consumers,
    published=[XpGained, LevelUp, AchievementUnlocked],
)


def create_app(settings: Settings | None = None, registry: CollectorRegistry = REGISTRY) -> FastAPI:
    return create_service_app(SPEC, settings or get_settings(), registry=registry)
