"""The pool of accounts the traders use, registered and logged in before the measured
phase, so the run measures trading, not a login stampede (the newcomers still register
and log in during the run: that is their journey).

A 429 from the gateway is waited out as its `Retry-After` says: the login and register
limits are part of the system under test, and a run that needs many accounts starts
the stack with raised limits (`ASTRA_RATE_LIMIT__AUTH__RATE`, README "Load it").
"""

from __future__ import annotations

import time
import uuid

import httpx

PASSWORD = "load-password-1"  # noqa: S105 - throwaway accounts on a local stack


class PoolError(RuntimeError):
    """The pool could not be prepared (the stack does not answer as it should)."""


def _call(
    client: httpx.Client, path: str, body: dict[str, str], deadline: float, cid: str
) -> httpx.Response:
    while True:
        response = client.post(path, json=body, headers={"X-Correlation-ID": cid})
        if response.status_code != 429:
            return response
        wait = min(float(response.headers.get("Retry-After", "1")), 10.0)
        if time.monotonic() + wait > deadline:
            raise PoolError(f"{path}: still rate limited; raise ASTRA_RATE_LIMIT__AUTH__*")
        time.sleep(wait)


def prepare(host: str, size: int, run_id: str, timeout: float = 120.0) -> list[dict[str, str]]:
    """`size` fresh accounts, each with an access token: [{"username", "token"}]."""
    deadline = time.monotonic() + timeout
    accounts = []
    with httpx.Client(base_url=host, timeout=10.0) as client:
        for n in range(size):
            cid = f"load-{run_id}-pool-{n}"
            username = f"lp_{uuid.uuid4().hex[:16]}"
            body = {
                "username": username,
                "email": f"{username}@load.astratrade",
                "password": PASSWORD,
            }
            registered = _call(client, "/api/v1/users/register", body, deadline, cid)
            if registered.status_code not in (201, 409):
                raise PoolError(f"register: HTTP {registered.status_code} {registered.text[:200]}")
            login = _call(
                client,
                "/api/v1/users/login",
                {"username": username, "password": PASSWORD},
                deadline,
                cid,
            )
            if login.status_code != 200:
                raise PoolError(f"login: HTTP {login.status_code} {login.text[:200]}")
            accounts.append({"username": username, "token": str(login.json()["access_token"])})
        if accounts:
            _warm_up(client, accounts[0]["token"], run_id)
    return accounts


def _warm_up(client: httpx.Client, token: str, run_id: str) -> None:
    """One read and one write before the window opens, so their series already exist
    in Prometheus (`rate()` does not count what a series held when it first appeared)."""
    headers = {"Authorization": f"Bearer {token}", "X-Correlation-ID": f"load-{run_id}-warmup"}
    markets = client.get("/api/v1/trading/markets", headers=headers)
    symbols = [m["symbol"] for m in markets.json()] if markets.status_code == 200 else []
    if symbols:
        client.post(
            "/api/v1/trading/orders",
            json={"symbol": symbols[0], "side": "buy", "quantity": "1"},
            headers={**headers, "Idempotency-Key": f"load-{run_id}-warmup"},
        )
