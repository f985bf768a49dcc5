"""The users service: accounts, argon2id passwords, EdDSA access tokens and their JWKS."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry

from backbone.auth import JwtVerifier
from backbone.service import ContextSpec, OutboxParts, ServiceSpec, create_service_app
from contracts.users import UserLoggedIn, UserRegistered
from services.users import keyfile
from services.users.config import Settings, get_settings
from services.users.deps import UsersContext
from services.users.models import metadata
from services.users.passwords import Passwords
from services.users.routes import router, wellknown
from services.users.tokens import TokenSigner


async def _build(parts: OutboxParts[Settings]) -> UsersContext:
    settings = parts.settings
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
    return UsersContext(parts.sessions, parts.outbox, parts.relay, passwords, signer)


def _own_key(ctx: UsersContext) -> JwtVerifier:
    """`/me` verifies with our own public key: no HTTP round trip to ourselves."""
    return ctx.signer.verifier()


SPEC = ServiceSpec(
    name="users",
    description="Accounts, password login and EdDSA access tokens; publishes the JWKS.",
    context=ContextSpec.with_outbox(metadata, _build),
    routers=[router, wellknown],
    published=[UserRegistered, UserLoggedIn],
    verifier=_own_key,
)


def create_app(settings: Settings | None = None, registry: CollectorRegistry = REGISTRY) -> FastAPI:
    return create_service_app(SPEC, settings or get_settings(), registry=registry)
