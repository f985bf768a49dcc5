"""The gamification service: XP, levels, achievements and a leaderboard from executed trades."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry

from backbone.service import ConsumerSpec, Runtime, ServiceSpec, create_service_app
from contracts.gamification import AchievementUnlocked, LevelUp, XpGained
from contracts.trading import TradeExecuted
from services.gamification.config import Settings, get_settings
from services.gamification.handlers import GROUP, XpAwarder
from services.gamification.routes import router
from services.gamification.store import GamificationStore


def _consumers(runtime: Runtime) -> list[ConsumerSpec]:
    awarder = XpAwarder(GamificationStore(runtime.redis))
    # commit_each: the handler reads the XP the previous trade of the batch added.
    return [ConsumerSpec(GROUP, {TradeExecuted: awarder.on_trade}, commit_each=True)]


SPEC = ServiceSpec(
    name="gamification",
    description="XP, levels, achievements and the leaderboard, earned by executed trades.",
    routers=[router],
    consumers=_consumers,
    published=[XpGained, LevelUp, AchievementUnlocked],
)


def create_app(settings: Settings | None = None, registry: CollectorRegistry = REGISTRY) -> FastAPI:
    return create_service_app(SPEC, settings or get_settings(), registry=registry)
