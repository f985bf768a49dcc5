"""The social service: a public feed of what traders do, built from the bus."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry

from backbone.service import ConsumerSpec, Runtime, ServiceSpec, create_service_app
from services.social.config import Settings, get_settings
from services.social.handlers import GROUP, feed_handlers
from services.social.routes import router
from services.social.store import FeedStore, Limits


def _store(runtime: Runtime) -> FeedStore:
    store = runtime.state.get("feed_store")
    if store is None:
        s = runtime.settings
        assert isinstance(s, Settings), "the social service runs with social settings"
        limits = Limits(s.global_feed_size, s.user_feed_size, s.entry_ttl_seconds)
        store = runtime.state["feed_store"] = FeedStore(runtime.redis, limits)
    assert isinstance(store, FeedStore)
    return store


async def _on_start(runtime: Runtime) -> None:
    _store(runtime)


def _consumers(runtime: Runtime) -> list[ConsumerSpec]:
    return [ConsumerSpec(GROUP, feed_handlers(_store(runtime)))]


SPEC = ServiceSpec(
    name="social",
    description="A public activity feed: trades, level-ups, achievements and NFT mints.",
    routers=[router],
    consumers=_consumers,
    on_start=_on_start,
)


def create_app(settings: Settings | None = None, registry: CollectorRegistry = REGISTRY) -> FastAPI:
    return create_service_app(SPEC, settings or get_settings(), registry=registry)
