"""The users service under real uvicorn, a real redis-server, and SQLite / PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import stat
import statistics
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from backbone.auth import JwksCache, JwtVerifier
from backbone.bus.envelope import Envelope, decode
from contracts.users import UserLoggedIn, UserRegistered
from services.users import keyfile
from services.users.app import create_app
from services.users.config import Settings
from services.users.models import users
from services.users.tokens import TokenSigner
from stack.netutil import free_port
from stack.redis_server import RedisServer
from tests.support.asgi_server import service_client
from tests.support.poll import poll_until
from tests.support.settings import FAST_BUS, FAST_REGISTRY
from tests.support.tokens import TokenIssuer

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


def make_settings(redis_url: str, tmp_path: Path, database_url: str = "") -> Settings:
    return Settings(
        env="test",
        instance_id="users-1",
        port=free_port(),
        redis_url=redis_url,
        run_dir=tmp_path,
        database_url=database_url,
        bus=FAST_BUS,
        registry=FAST_REGISTRY,
    )


@asynccontextmanager
async def users_service(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with service_client(create_app, settings) as http:
        yield http


async def stream_events(redis_url: str, stream: str) -> list[tuple[Envelope, bytes]]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        entries = await client.xrange(stream)
    finally:
        await client.aclose()
    return [(decode(fields[b"envelope"]), fields[b"envelope"]) for _, fields in entries]


async def wait_events(redis_url: str, stream: str, n: int) -> list[tuple[Envelope, bytes]]:
    async def check() -> list[tuple[Envelope, bytes]] | None:
        events = await stream_events(redis_url, stream)
        return events if len(events) >= n else None

    events = await poll_until(check, f"{n} events on {stream}", timeout=5)
    assert len(events) == n
    return events


async def count_users(database_url: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(users))).scalar_one())
    finally:
        await engine.dispose()


async def register(http: httpx.AsyncClient, username: str, email: str = "") -> httpx.Response:
    email = email or f"{username}@example.com"
    return await http.post(
        "/api/v1/users/register",
        json={"username": username, "email": email, "password": PASSWORD},
    )


async def login(http: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    return await http.post("/api/v1/users/login", json={"username": username, "password": password})


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def test_register_login_me_and_events(
    redis_server: RedisServer, tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(redis_server.url, tmp_path, database_url)
    async with users_service(settings) as http:
        created = await register(http, "alice_01", "Alice.Smith@Example.COM")
        assert created.status_code == 201, created.text
        user = created.json()
        assert user == {
            "id": user["id"],
            "username": "alice_01",
            "email": "alice.smith@example.com",
        }

        logged_in = await login(http, "alice_01")
        assert logged_in.status_code == 200, logged_in.text
        assert logged_in.headers["cache-control"] == "no-store"
        body = logged_in.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 900
        token = body["access_token"]

        # The token verifies against the served JWKS, the way every other service checks it.
        jwks_url = str(http.base_url.join("/.well-known/jwks.json"))
        jwks = (await http.get("/.well-known/jwks.json")).json()
        (key,) = jwks["keys"]
        assert {key["kty"], key["crv"], key["alg"], key["use"]} == {
            "OKP",
            "Ed25519",
            "EdDSA",
            "sig",
        }
        assert "d" not in key  # the private half never leaves the service
        header = jwt.get_unverified_header(token)
        assert header["alg"] == "EdDSA"
        assert header["kid"] == key["kid"]
        verifier = JwtVerifier(
            JwksCache(jwks_url), issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        claims = await verifier.verify(token)
        assert claims.subject == user["id"]
        assert claims.username == "alice_01"
        raw = claims.raw
        assert raw["iss"] == "astratrade-users"
        assert raw["aud"] == "astratrade"
        assert raw["exp"] - raw["iat"] == 900
        assert raw["nbf"] == raw["iat"]
        assert len(raw["jti"]) >= 16

        me = await http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
        assert me.json() == user

        registered = await wait_events(redis_server.url, UserRegistered.stream_key, 1)
        envelope, wire = registered[0]
        assert envelope.producer == "users"
        assert envelope.data["user_id"] == user["id"]
        assert envelope.data["username"] == "alice_01"
        assert set(envelope.data) == {"user_id", "username", "registered_at"}
        assert PASSWORD.encode() not in wire
        assert b"argon2" not in wire
        logins = await wait_events(redis_server.url, UserLoggedIn.stream_key, 1)
        assert logins[0][0].data == {"user_id": user["id"], "username": "alice_01"}

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            stored = (await conn.execute(select(users.c.password_hash))).scalar_one()
    finally:
        await engine.dispose()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


async def test_duplicates_conflict_and_racing_registrations(
    redis_server: RedisServer, tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(redis_server.url, tmp_path, database_url)
    async with users_service(settings) as http:
        assert (await register(http, "bob", "bob@example.com")).status_code == 201
        same_name = assert_problem(await register(http, "bob", "other@example.com"), 409)
        assert same_name["type"].endswith("/username-taken")
        same_mail = assert_problem(await register(http, "bobby", "BOB@example.com"), 409)
        assert same_mail["type"].endswith("/email-taken")

        # Concurrent registrations of one name: the unique index decides, never a 500.
        racing = await asyncio.gather(
            *(register(http, "carol", f"carol{i}@example.com") for i in range(6))
        )
        assert sorted(r.status_code for r in racing) == [201] + [409] * 5
        await wait_events(redis_server.url, UserRegistered.stream_key, 2)
    assert await count_users(database_url) == 2


async def test_login_failures_look_alike(redis_server: RedisServer, tmp_path: Path) -> None:
    settings = make_settings(redis_server.url, tmp_path)
    async with users_service(settings) as http:
        assert (await register(http, "dave")).status_code == 201

        wrong = assert_problem(await login(http, "dave", "not the password"), 401)
        unknown = assert_problem(await login(http, "nobody_here", "not the password"), 401)
        for body in (wrong, unknown):
            body.pop("correlation_id")
        assert wrong == unknown
        assert wrong["type"].endswith("/invalid-credentials")

        async def timed(username: str) -> float:
            start = time.perf_counter()
            response = await login(http, username, "not the password")
            assert response.status_code == 401
            return time.perf_counter() - start

        wrong_times = [await timed("dave") for _ in range(4)]
        unknown_times = [await timed("nobody_here") for _ in range(4)]
        # An unknown user still pays for one argon2 verification: without the dummy
        # hash it would answer ~50x faster; the bounds leave room for a noisy machine.
        ratio = statistics.median(unknown_times) / statistics.median(wrong_times)
        assert 0.4 < ratio < 2.5, (wrong_times, unknown_times)

        # Uppercase or Unicode names are simply unknown at login (no 500, no 422 leak).
        assert_problem(await login(http, "DAVE"), 401)
        assert_problem(await login(http, "dävé"), 401)


INVALID_REGISTRATIONS: list[Any] = [
    {"username": "ab", "email": "a@example.com", "password": PASSWORD},  # too short
    {"username": "a" * 33, "email": "a@example.com", "password": PASSWORD},  # too long
    {"username": "Alice", "email": "a@example.com", "password": PASSWORD},  # uppercase
    {"username": "al ice", "email": "a@example.com", "password": PASSWORD},
    {"username": "ålice", "email": "a@example.com", "password": PASSWORD},  # Unicode
    {"username": "alice\u200b", "email": "a@example.com", "password": PASSWORD},  # zero-width
    {"username": "\uff41lice", "email": "a@example.com", "password": PASSWORD},  # fullwidth a
    {"username": "x" * 1_000_000, "email": "a@example.com", "password": PASSWORD},  # 1 MB
    {"username": "alice", "email": "not-an-email", "password": PASSWORD},
    {"username": "alice", "email": "a@b", "password": PASSWORD},
    {"username": "alice", "email": "a@" + "b" * 300 + ".com", "password": PASSWORD},
    {"username": "alice", "email": "a@example.com", "password": "short"},
    {"username": "alice", "email": "a@example.com", "password": "p" * 129},
    {"username": "alice", "email": "a@example.com", "password": "p" * 1_000_000},
    {"username": "alice", "email": "a@example.com"},  # missing
    {"username": "alice", "email": "a@example.com", "password": PASSWORD, "admin": True},
    {"username": 123, "email": "a@example.com", "password": PASSWORD},
    {"username": None, "email": "a@example.com", "password": PASSWORD},
    ["alice", "a@example.com", PASSWORD],
    "alice",
    None,
]


async def test_invalid_input_is_422_and_writes_nothing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = make_settings(redis_server.url, tmp_path)
    async with users_service(settings) as http:
        for body in INVALID_REGISTRATIONS:
            response = await http.post("/api/v1/users/register", json=body)
            problem = assert_problem(response, 422)
            assert len(response.content) < 10_000  # the input is never echoed back
            assert PASSWORD not in response.text
            assert problem["errors"]
        for raw in (b"{not json", b"", b'{"username": "alice"', b"\xff\xfe"):
            response = await http.post(
                "/api/v1/users/register",
                content=raw,
                headers={"Content-Type": "application/json"},
            )
            assert_problem(response, 422)
        for body in (
            {"username": "alice", "password": PASSWORD, "extra": 1},
            {"username": "alice"},
            {"username": "u" * 100_000, "password": PASSWORD},
            {"username": "alice", "password": "p" * 1_000_000},
        ):
            assert_problem(await http.post("/api/v1/users/login", json=body), 422)

        # Nothing was stored and nothing published: the first event out is this one.
        assert (await register(http, "erin")).status_code == 201
        events = await wait_events(redis_server.url, UserRegistered.stream_key, 1)
        assert events[0][0].data["username"] == "erin"
    assert await count_users(settings.database_url) == 1


async def test_protected_routes_need_a_valid_token(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = make_settings(redis_server.url, tmp_path)
    async with users_service(settings) as http, TokenIssuer() as foreign:
        user = (await register(http, "frank")).json()
        me = "/api/v1/users/me"

        missing = assert_problem(await http.get(me), 401)
        assert "Bearer" in (await http.get(me)).headers["www-authenticate"]
        assert missing["title"] == "Unauthorized"
        # A forwarded identity header is not an identity.
        assert_problem(await http.get(me, headers={"X-User-ID": user["id"]}), 401)
        assert_problem(
            await http.get(me, headers={"X-User-ID": user["id"], "X-Username": "frank"}), 401
        )
        # Signed by someone else's key, even with the right claims.
        forged = foreign.token(user["id"], "frank")
        assert_problem(await http.get(me, headers=_bearer(forged)), 401)
        # `alg: none` and garbage.
        unsigned = jwt.encode({"sub": user["id"]}, key=None, algorithm="none")
        assert_problem(await http.get(me, headers=_bearer(unsigned)), 401)
        assert_problem(await http.get(me, headers=_bearer("a.b.c")), 401)
        assert_problem(await http.get(me, headers={"Authorization": "Basic Zm9vOmJhcg=="}), 401)

        # Our own key, but expired or for another audience.
        key = keyfile.load_or_create(settings.key_path)
        expired = TokenSigner(
            key, issuer="astratrade-users", audience="astratrade", ttl_seconds=-60
        )
        assert_problem(
            await http.get(me, headers=_bearer(expired.issue(user["id"], "frank").token)), 401
        )
        other_aud = TokenSigner(
            key, issuer="astratrade-users", audience="elsewhere", ttl_seconds=60
        )
        assert_problem(
            await http.get(me, headers=_bearer(other_aud.issue(user["id"], "frank").token)), 401
        )
        # The same key with the right claims is accepted: the checks above were the claims.
        valid = TokenSigner(key, issuer="astratrade-users", audience="astratrade", ttl_seconds=60)
        ok = await http.get(me, headers=_bearer(valid.issue(user["id"], "frank").token))
        assert ok.status_code == 200
        assert ok.json()["username"] == "frank"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_signing_key_is_created_once_private_and_shared(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "users-ed25519.pem"

    def public_bytes(_: int) -> bytes:
        return (
            keyfile.load_or_create(path)
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )

    # Instances starting together on one host end up with one key.
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = set(pool.map(public_bytes, range(16)))
    assert len(keys) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["users-ed25519.pem"]  # no temp files
    assert public_bytes(0) in keys  # a restart loads the same key

    signer = TokenSigner(keyfile.load_or_create(path), issuer="i", audience="a", ttl_seconds=60)
    again = TokenSigner(keyfile.load_or_create(path), issuer="i", audience="a", ttl_seconds=60)
    assert signer.kid == again.kid  # the kid is the key's thumbprint, stable across restarts

    os.chmod(path, 0o644)
    with pytest.raises(keyfile.SigningKeyError, match="chmod 600"):
        keyfile.load_or_create(path)
