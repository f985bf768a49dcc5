"""One Locust user class per persona, with weighted tasks mirroring the real mix.

    trader    (weight 5) a pool account, logged in before the run: reads the market,
              places market orders with an `Idempotency-Key` (one in ten retried with
              the same key, as a client that lost the answer does), reads portfolio
              and orders
    browser   (weight 4) anonymous: markets, leaderboard, the feed a few pages deep
    newcomer  (weight 1) a journey per task: registers, logs in, a first trade, then
              profile and NFT collection
    placer    a trader who only places orders (`--mix orders`, its own locustfile)

Every request is named by its route template, so statistics group by route (and by
the route's SLO class, `loadtests.routes`), and carries `X-Correlation-ID:
load-<run-id>-<persona>-<n>`, so its logs and traces are found by that prefix.

How an answer counts (`classify`): the expected codes succeed; 429 fails as
"HTTP 429" (reported apart, not an error: the limit is part of the system); a 5xx or
no answer at all is the error the SLOs count; any other 4xx is the client's.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import uuid
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant_throughput, task

from loadtests.outcomes import CLIENT_ERROR, NO_ANSWER, SERVER_ERROR, THROTTLED

RUN_ID = os.environ.get("ASTRA_LOAD_RUN_ID", "adhoc")
USERS = max(1, int(os.environ.get("ASTRA_LOAD_USERS", "10")))
RATE = float(os.environ.get("ASTRA_LOAD_RATE", "10"))  # tasks per second, all users together
PASSWORD = "load-password-1"  # noqa: S105 - throwaway accounts on a local stack


_seq = itertools.count(1)


def correlation_id(persona: str) -> str:
    return f"load-{RUN_ID}-{persona}-{next(_seq)}"


def new_username() -> str:
    """A fresh account name the users service accepts (`^[a-z0-9_]{3,32}$`)."""
    return f"ld_{uuid.uuid4().hex[:16]}"


def classify(response: Any, ok: tuple[int, ...] = (200,)) -> None:
    """Mark a `catch_response` answer as success or as one of the failure kinds."""
    code = int(response.status_code or 0)
    if code in ok:
        response.success()
    elif code == 429:
        response.failure(THROTTLED)
    elif code == 0:
        response.failure(NO_ANSWER)
    elif code >= 500:
        response.failure(SERVER_ERROR)
    else:
        response.failure(CLIENT_ERROR)


def _pool() -> list[dict[str, str]]:
    path = os.environ.get("ASTRA_LOAD_POOL")
    if not path:
        return []
    accounts: list[dict[str, str]] = json.loads(Path(path).read_text())
    return accounts


_POOL = _pool()
_next_account = itertools.count()


class Persona(FastHttpUser):
    abstract = True
    persona = "user"
    # Longer than the gateway's upstream timeout (10 s): its 504 is what the client sees.
    network_timeout = 30.0
    connection_timeout = 5.0
    # Each user runs its share of the total task rate.
    wait_time = constant_throughput(max(RATE / USERS, 0.01))

    def request(
        self,
        method: str,
        name: str,
        path: str | None = None,
        *,
        ok: tuple[int, ...] = (200,),
        token: str | None = None,
        **kwargs: Any,
    ) -> Any:
        headers = {"X-Correlation-ID": correlation_id(self.persona), **kwargs.pop("headers", {})}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        with self.client.request(
            method, path or name, name=name, headers=headers, catch_response=True, **kwargs
        ) as response:
            classify(response, ok)
            return response

    @staticmethod
    def body(response: Any) -> Any:
        try:
            return response.json()
        except (ValueError, TypeError):
            return None

    def symbols(self) -> list[str]:
        response = self.request("GET", "/api/v1/trading/markets")
        markets = self.body(response) if response.status_code == 200 else None
        if isinstance(markets, list) and markets:
            return [str(m["symbol"]) for m in markets]
        return ["AAPL"]


class Trader(Persona):
    weight = 5
    persona = "trader"

    def on_start(self) -> None:
        self.token: str | None = None
        self.orders: list[str] = []
        self.held: list[str] = []
        self.market = ["AAPL"]
        if _POOL:
            account = _POOL[next(_next_account) % len(_POOL)]
            self.token = account["token"]
        else:  # no pool (a bare `locust -f`): log in once, as the trader does
            name = new_username()
            self.token = _register_and_login(self, name)

    @task(4)
    def read_markets(self) -> None:
        self.market = self.symbols()

    @task(2)
    def place_order(self) -> None:
        sell = bool(self.held) and random.random() < 0.4
        symbol = self.held.pop(random.randrange(len(self.held))) if sell else None
        symbol = symbol or random.choice(self.market)
        order = {"symbol": symbol, "side": "sell" if sell else "buy", "quantity": "1"}
        key = uuid.uuid4().hex
        retries = 2 if random.random() < 0.1 else 1
        for _ in range(retries):
            response = self.request(
                "POST",
                "/api/v1/trading/orders",
                ok=(200, 201),
                token=self.token,
                json=order,
                headers={"Idempotency-Key": key},
            )
        body = self.body(response)
        if response.status_code in (200, 201) and isinstance(body, dict):
            self.orders = [str(body["order_id"]), *self.orders][:20]
            if not sell:
                self.held.append(symbol)

    @task(2)
    def read_portfolio(self) -> None:
        self.request("GET", "/api/v1/trading/portfolio", token=self.token)

    @task(1)
    def read_orders(self) -> None:
        self.request("GET", "/api/v1/trading/orders", token=self.token)
        if self.orders:
            order_id = random.choice(self.orders)
            self.request(
                "GET",
                "/api/v1/trading/orders/{order_id}",
                f"/api/v1/trading/orders/{order_id}",
                token=self.token,
            )


class Placer(Persona):
    """A trader at the market's open: orders only, the same requests as `Trader`'s
    (the `orders` mix: a stream that grows fast without the reads' cost, e.g. for a
    drill that needs a group 1,000 events behind on a 2-core machine). Not a subclass:
    Locust merges a base class's tasks into its subclasses'."""

    persona = "placer"
    on_start = Trader.on_start

    @task
    def place_order(self) -> None:
        Trader.place_order(self)


class Browser(Persona):
    weight = 4
    persona = "browser"

    @task(3)
    def read_markets(self) -> None:
        self.symbols()

    @task(2)
    def read_leaderboard(self) -> None:
        self.request(
            "GET", "/api/v1/gamification/leaderboard", "/api/v1/gamification/leaderboard?limit=10"
        )

    @task(3)
    def read_feed(self) -> None:
        path = "/api/v1/social/feed?limit=10"
        for _ in range(random.randint(1, 3)):  # a few pages deep, by cursor
            response = self.request("GET", "/api/v1/social/feed", path)
            page = self.body(response)
            cursor = page.get("next_cursor") if isinstance(page, dict) else None
            if not cursor:
                break
            path = f"/api/v1/social/feed?limit=10&cursor={cursor}"


class Newcomer(Persona):
    weight = 1
    persona = "newcomer"

    @task
    def first_visit(self) -> None:
        token = _register_and_login(self, new_username())
        if token is None:
            return
        symbol = random.choice(self.symbols())
        self.request(
            "POST",
            "/api/v1/trading/orders",
            ok=(200, 201),
            token=token,
            json={"symbol": symbol, "side": "buy", "quantity": "1"},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        self.request("GET", "/api/v1/gamification/profile", token=token)
        self.request("GET", "/api/v1/nft/collection", token=token)


def _register_and_login(user: Persona, username: str) -> str | None:
    user.request(
        "POST",
        "/api/v1/users/register",
        ok=(201, 409),
        json={"username": username, "email": f"{username}@load.astratrade", "password": PASSWORD},
    )
    response = user.request(
        "POST",
        "/api/v1/users/login",
        json={"username": username, "password": PASSWORD},
    )
    body = user.body(response)
    if response.status_code == 200 and isinstance(body, dict):
        return str(body["access_token"])
    return None
