"""The attacks of the "close the doors" pass, replayed against a real `astra up`.

Each was confirmed against the stack as it was (an unauthenticated Redis, the
well-known `dev-registry-token`, an unsupervised Redis); each must now fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import AuthenticationError, NoPermissionError

from backbone import keys
from backbone.registry import InstanceInfo
from backbone.registry._record import encode_record
from contracts.trading import TradeExecuted
from stack.netutil import free_port
from tests.e2e.conftest import Stack
from tests.support.poll import poll_until
from tests.support.tokens import TokenIssuer

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse 1"


async def register_and_login(http: httpx.AsyncClient, name: str) -> tuple[str, str]:
    """Through the gateway; returns (user id, access token)."""
    body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    created = await http.post("/api/v1/users/register", json=body)
    assert created.status_code == 201, created.text
    login = await http.post("/api/v1/users/login", json={"username": name, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return str(created.json()["id"]), str(login.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def fake_users_instance(issuer: TokenIssuer) -> AsyncIterator[list[str]]:
    """The attacker's "users" instance: serves its own JWKS, records every request."""
    seen: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path} {await request.text()}")
        if request.path == "/.well-known/jwks.json":
            return web.json_response(issuer.jwks())
        return web.json_response({"access_token": "x", "token_type": "bearer"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        seen.append(f"url http://127.0.0.1:{port}")
        yield seen
    finally:
        await runner.cleanup()


def poisoned_record(url: str, token: str) -> tuple[str, str]:
    """A correctly signed `users` record whose id sorts first, as the attacker wrote it."""
    info = InstanceInfo(
        service="users",
        instance_id="aaaa-evil",
        url=url,
        version="0.1.0",
        started_at=datetime.now(UTC),
        status="ready",
    )
    return keys.registry_instance("users", info.instance_id), encode_record(info, token)


async def test_registry_poisoning_cannot_take_over_accounts(stack: Stack) -> None:
    gateway, trading = stack.url("gateway-1"), stack.url("trading-1")
    redis_url = str(stack.info["redis_url"])
    async with (
        TokenIssuer() as attacker,
        fake_users_instance(attacker) as seen,
        httpx.AsyncClient(base_url=gateway, timeout=10) as http,
    ):
        fake_url = seen.pop(0).removeprefix("url ")
        victim_id, _ = await register_and_login(http, "victim")

        # 1. As anyone on the host, with the once well-known key: Redis lets no one in.
        key, record = poisoned_record(fake_url, "dev-registry-token")
        anonymous = aioredis.Redis.from_url(redis_url)
        try:
            with pytest.raises(AuthenticationError):
                await anonymous.set(key, record, px=60_000)
        finally:
            await anonymous.aclose()

        # 2. As a neighbouring service that knows the stack's registry key (the worst
        # case short of owning the users service): its Redis user may not write there.
        key, record = poisoned_record(fake_url, stack.secrets["registry_token"])
        social = aioredis.Redis.from_url(stack.redis_url_as("social"))
        try:
            with pytest.raises(NoPermissionError):
                await social.set(key, record, px=60_000)
            with pytest.raises(NoPermissionError):
                await social.zadd(keys.registry_index("users"), {"aaaa-evil": 2**50})
        finally:
            await social.aclose()

        # A token the attacker signed for the victim is worth nothing, at the gateway
        # and at trading itself.
        forged = attacker.token(victim_id, "victim")
        assert (
            await http.get("/api/v1/trading/portfolio", headers=bearer(forged))
        ).status_code == 401
        direct = await http.get(f"{trading}/api/v1/trading/portfolio", headers=bearer(forged))
        assert direct.status_code == 401
        for _ in range(10):
            login = await http.post(
                "/api/v1/users/login", json={"username": "victim", "password": PASSWORD}
            )
            assert login.status_code == 200, login.text
        assert seen == []  # no login (and no password) ever reached the fake instance


async def test_a_signed_record_for_a_foreign_host_is_ignored_and_counted(stack: Stack) -> None:
    """Even with the users service's own Redis user and the stack's key (a compromised
    users process), a record naming a host outside the allowed list routes nothing."""
    gateway = stack.url("gateway-1")
    key, record = poisoned_record("http://attacker.invalid:8101", stack.secrets["registry_token"])
    users = aioredis.Redis.from_url(stack.redis_url_as("users"))
    try:
        await users.set(key, record, px=60_000)
        await users.zadd(keys.registry_index("users"), {"aaaa-evil": 2**50})
    finally:
        await users.aclose()
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:

        async def rejected() -> float:
            text = (await http.get("/metrics")).text
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("astra_registry_rejected_records_total")
                and 'reason="host_not_allowed"' in line
            )

        assert await poll_until(rejected, "the foreign record counted as rejected", 10) >= 1
        view = (await http.get("/api/v1/services", headers=stack.operator_headers)).json()
        urls = [i["url"] for i in view["services"]["users"]["instances"]]
        assert urls == [stack.url("users-1")]
        login = await http.post("/api/v1/users/login", json={"username": "x", "password": "y"})
        assert login.status_code == 401  # answered by the real users service


def forged_trade(user_id: str, username: str) -> str:
    now = datetime.now(UTC)
    data = {
        "order_id": str(uuid.uuid4()),
        "user_id": user_id,
        "username": username,
        "symbol": "AAPL",
        "side": "buy",
        "quantity": "1000",
        "price": "1",
        "realized_pnl": "0",
        "trade_number": 1,
        "executed_at": now.isoformat(),
    }
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "type": TradeExecuted.stream_key,
            "version": 1,
            "occurred_at": now.isoformat(),
            "producer": "trading",
            "correlation_id": "forged",
            "causation_id": None,
            "traceparent": None,
            "data": data,
        }
    )


async def test_forged_trade_events_cannot_be_written(stack: Stack) -> None:
    gateway, gam = stack.url("gateway-1"), stack.url("gamification-1")
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:
        victim_id, victim = await register_and_login(http, "mallory")
        envelope = forged_trade(victim_id, "mallory")
        stream = TradeExecuted.stream_key

        anonymous = aioredis.Redis.from_url(str(stack.info["redis_url"]))
        try:
            with pytest.raises(AuthenticationError):
                await anonymous.xadd(stream, {keys.ENVELOPE_FIELD: envelope})
        finally:
            await anonymous.aclose()
        # Every process but trading: none may add to the stream trading publishes.
        for user in ("users", "gamification", "nft", "social", "gateway", "observe", "operator"):
            client = aioredis.Redis.from_url(stack.redis_url_as(user))
            try:
                with pytest.raises(NoPermissionError):
                    await client.xadd(stream, {keys.ENVELOPE_FIELD: envelope})
            finally:
                await client.aclose()

        # A real trade of another user after the attempts: once its XP is there, every
        # entry before it has been consumed, so "mallory has nothing" is final.
        canary_id, canary = await register_and_login(http, "canary")
        markets = (await http.get("/api/v1/trading/markets")).json()
        order = await http.post(
            "/api/v1/trading/orders",
            json={"symbol": markets[0]["symbol"], "side": "buy", "quantity": "1"},
            headers=bearer(canary),
        )
        assert order.status_code == 201, order.text

        async def canary_xp() -> Any:
            r = await http.get("/api/v1/gamification/profile", headers=bearer(canary))
            return r.is_success and r.json()["xp"] > 0

        await poll_until(canary_xp, "the canary's XP", 10)
        profile = await http.get(f"{gam}/api/v1/gamification/profile", headers=bearer(victim))
        assert profile.status_code in (200, 404), profile.text
        assert profile.status_code == 404 or profile.json()["xp"] == 0
        assert (await http.get("/api/v1/nft/collection", headers=bearer(victim))).json() == []
        feed = await http.get("/api/v1/social/feed", params={"user": "mallory", "limit": 100})
        assert feed.json()["items"] == []
        assert canary_id != victim_id


async def test_redis_restart_is_survived_without_restarting_services(stack: Stack) -> None:
    """SIGTERM to the stack's Redis: it is restarted; the services stay up and converge."""
    consumers = ("gamification-1", "nft-1", "social-1")
    pids = {name: stack.pid(name) for name in consumers}
    redis_pid = stack.pid("redis")
    async with httpx.AsyncClient(base_url=stack.url("gateway-1"), timeout=10) as http:
        _, token = await register_and_login(http, "steady")
        symbol = (await http.get("/api/v1/trading/markets")).json()[0]["symbol"]
        accepted = 0

        async def order() -> None:
            nonlocal accepted
            r = await http.post(
                "/api/v1/trading/orders",
                json={"symbol": symbol, "side": "buy", "quantity": "1"},
                headers={**bearer(token), "Idempotency-Key": str(uuid.uuid4())},
            )
            assert r.status_code in (201, 429, 502, 503), r.text  # never a faked success
            accepted += r.status_code == 201

        os.kill(redis_pid, signal.SIGTERM)
        lives: list[int] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # orders and liveness while Redis comes back
            await order()
            for name in consumers:
                lives.append((await http.get(f"{stack.url(name)}/health/live")).status_code)
            stack.refresh()
            if stack.pid("redis") != redis_pid and accepted >= 5:
                break
            await asyncio.sleep(0.05)
        assert stack.pid("redis") != redis_pid, "redis was not restarted"
        assert set(lives) == {200}
        for _ in range(3):
            await order()

        async def all_ready() -> bool:
            codes = [
                (await http.get(f"{stack.url(n)}/health/ready")).status_code for n in consumers
            ]
            return codes == [200, 200, 200]

        await poll_until(all_ready, "every consumer ready again", 20)

        async def feed_has_all() -> Any:
            r = await http.get("/api/v1/social/feed", params={"user": "steady", "limit": 100})
            trades = [i for i in r.json()["items"] if i["kind"] == "trade"] if r.is_success else []
            return trades if len(trades) >= accepted else None

        trades = await poll_until(feed_has_all, f"{accepted} trades in the feed", 30)
        assert len(trades) == accepted  # every accepted order, once
        stack.refresh()
        assert {name: stack.pid(name) for name in consumers} == pids  # nobody crash-looped
