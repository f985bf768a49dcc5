"""The social service: a public feed of what traders do, built from the bus."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry

from backbone.service import ConsumerSpec, ContextSpec, Parts, ServiceSpec, create_service_app
from services.social.config import Settings, get_settings
from services.social.deps import SocialContext
from services.social.handlers import GROUP, feed_handlers
from services.social.routes import router
from services.social.store import FeedStore, Limits


async def _build(parts: Parts[Settings]) -> SocialContext:
    s = parts.settings
    limits = Limits(s.global_feed_size, s.user_feed_size, s.entry_ttl_seconds)
    return SocialContext(FeedStore(parts.redis, limits))


def _consumers(ctx: SocialContext) -> list[ConsumerSpec]:
    return [ConsumerSpec(GROUP, feed_handlers(ctx.feed))]


SPEC = ServiceSpec(
    name="social",
    description="A public activity feed: trades, level-ups, achievements and NFT mints.",
    context=ContextSpec.plain(_build),
    routers=[router],
    consumers=_consumers,
)


def create_app(settings: Settings | None = None, registry: CollectorRegistry = REGISTRY) -> FastAPI:
    return create_service_app(SPEC, settings or get_settings(), registry=registry)
