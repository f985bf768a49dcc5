"""The users service: accounts, argon2id passwords, EdDSA access tokens and their JWKS."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry

from backbone.service import Runtime, ServiceSpec, create_service_app
from contracts.users import UserLoggedIn, UserRegistered
from services.users import keyfile
from services.users.config import Settings, get_settings
from services.users.deps import UsersContext
from services.users.models import metadata
from services.users.passwords import Passwords
from services.users.routes import router, wellknown
from services.users.tokens import TokenSigner


async def _on_start(runtime: Runtime) -> None:
    settings = runtime.settings
    assert isinstance(settings, Settings)
    key = await asyncio.to_thread(keyfile.load_or_create, settings.key_path)
    signer = TokenSigner(
        key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
    )
    hasher = PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
    passwords = await asyncio.to_thread(
        Passwords, hasher, max_concurrency=settings.argon2_max_concurrency
    )
    # `/me` verifies with our own public key: no HTTP round trip to ourselves.
    runtime.verifier = signer.verifier()
    assert runtime.sessions is not None
    assert runtime.outbox is not None
    assert runtime.relay is not None
    runtime.state["users"] = UsersContext(
        runtime.sessions, runtime.outbox, runtime.relay, passwords, signer
    )


SPEC = ServiceSpec(
    name="users",
    description="Accounts, password login and EdDSA access tokens; publishes the JWKS.",
    routers=[router, wellknown],
    metadata=metadata,
    outbox=True,
    published=[UserRegistered, UserLoggedIn],
    on_start=_on_start,
)


def create_app(settings: Settings | None = None, registry: CollectorRegistry = REGISTRY) -> FastAPI:
    return create_service_app(SPEC, settings or get_settings(), registry=registry)
