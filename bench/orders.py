"""`make bench-orders`: what one order costs, from the database up, in one run.

Legs, on the same machine and the same kind of database (SQLite in WAL mode, the
default; `--postgresql URL` adds the PostgreSQL twins):

  raw_sql      the fill's transaction shape (account row, position, order, two outbox
               rows) as plain statements on the synchronous driver: the limit
  ledger       trading's own `Ledger.place`, in process, through SQLAlchemy's async
               engine as the service builds it: the service's cost without HTTP
  stack        `python -m loadtests capacity --up --mix orders` (Locust traders that
               only place orders, through the gateway, the SLO gate judging each step:
               write p99 within 500 ms, events fresh): the knee, orders_per_s_at_slo

Each SQL leg runs `--concurrency` writers (different users) for `--seconds`, reports
orders/s, p50/p99 latency and CPU per order (this process's CPU time / orders). The
last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from backbone.config import BusSettings
from backbone.outbox import Outbox, OutboxRelay
from services.trading.ledger import Ledger, Trader
from services.trading.market import Market
from services.trading.models import metadata
from services.trading.models import outbox as outbox_table
from services.trading.unit_of_work import unit_of_work_for

ROOT = Path(__file__).resolve().parents[1]
CASH = Decimal("100000000")


def _percentiles(latencies: list[float]) -> dict[str, float]:
    latencies.sort()
    return {
        "p50_ms": round(1000 * statistics.median(latencies), 3),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 3),
    }


# --- raw SQL: the limit ------------------------------------------------------------

_RAW_SCHEMA = """
CREATE TABLE accounts (user_id TEXT PRIMARY KEY, username TEXT NOT NULL, cash INTEGER NOT NULL,
  trade_count INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE positions (user_id TEXT, symbol TEXT, quantity INTEGER NOT NULL,
  average_price INTEGER NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (user_id, symbol));
CREATE TABLE orders (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, trade_number INTEGER NOT NULL,
  symbol TEXT NOT NULL, side TEXT NOT NULL, quantity INTEGER NOT NULL, price INTEGER NOT NULL,
  notional INTEGER NOT NULL, realized_pnl INTEGER NOT NULL, status TEXT NOT NULL,
  idempotency_key TEXT, request_hash TEXT, executed_at TEXT NOT NULL,
  UNIQUE (user_id, trade_number), UNIQUE (user_id, idempotency_key));
CREATE INDEX ix_orders_user ON orders (user_id);
CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
  stream TEXT NOT NULL, envelope BLOB NOT NULL, created_at TEXT NOT NULL, sent_at TEXT,
  attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX ix_outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
"""


def _raw_fill(db: sqlite3.Connection, user: str, n: int, envelope: bytes) -> None:
    now = "2026-12-02T00:00:00+00:00"
    db.execute("BEGIN IMMEDIATE")
    db.execute(
        "INSERT INTO accounts VALUES (?, ?, ?, 0, ?, ?) ON CONFLICT DO NOTHING",
        (user, user, 10**14, now, now),
    )
    db.execute(
        "SELECT id FROM orders WHERE user_id = ? AND idempotency_key = ?", (user, f"k{n}")
    ).fetchone()
    held = db.execute(
        "SELECT quantity, average_price FROM positions WHERE user_id = ? AND symbol = ?",
        (user, "AAPL"),
    ).fetchone()
    count = db.execute(
        "UPDATE accounts SET cash = cash - ?, trade_count = trade_count + 1, updated_at = ? "
        "WHERE user_id = ? AND cash >= ? RETURNING cash, trade_count",
        (1_000_000, now, user, 1_000_000),
    ).fetchone()[1]
    if held is None:
        db.execute("INSERT INTO positions VALUES (?, ?, ?, ?, ?)", (user, "AAPL", 1, 100, now))
    else:
        db.execute(
            "UPDATE positions SET quantity = ?, average_price = ?, updated_at = ? "
            "WHERE user_id = ? AND symbol = ?",
            (held[0] + 1, 100, now, user, "AAPL"),
        )
    db.execute(
        "INSERT INTO orders VALUES (?, ?, ?, 'AAPL', 'buy', 1, 100, 100, 0, 'filled', ?, ?, ?)",
        (f"{user}-{n}", user, count, f"k{n}", "h" * 64, now),
    )
    for stream in ("astra.trading.trade_executed.v1", "astra.trading.position_updated.v1"):
        db.execute(
            "INSERT INTO outbox (event_id, stream, envelope, created_at) VALUES (?, ?, ?, ?)",
            (f"{user}-{n}-{stream}", stream, envelope, now),
        )
    db.execute("COMMIT")


def raw_sql(folder: Path, seconds: float, concurrency: int) -> dict[str, Any]:
    """`concurrency` threads, a connection each (SQLite serialises the writers)."""
    path = folder / "raw.db"
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.executescript(_RAW_SCHEMA)
    setup.close()
    envelope = b"x" * 600  # about the size of a trade_executed envelope
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def writer(w: int) -> None:
        db = sqlite3.connect(path, isolation_level=None, timeout=30)
        n, mine = 0, []
        while time.monotonic() < stop:
            started = time.perf_counter()
            _raw_fill(db, f"user-{w}", n, envelope)
            mine.append(time.perf_counter() - started)
            n += 1
        db.close()
        with lock:
            latencies.extend(mine)

    cpu, wall = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "orders_per_s": round(len(latencies) / wall),
        "cpu_us_per_order": round(1e6 * cpu / len(latencies), 1),
        **_percentiles(latencies),
    }


# --- the ledger, in process --------------------------------------------------------


async def _ledger(url: str, seconds: float, concurrency: int) -> dict[str, Any]:
    engine: AsyncEngine = create_async_engine(url, pool_pre_ping=True)  # as the service
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            from sqlalchemy import text

            await conn.execute(text("PRAGMA journal_mode=WAL"))
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    outbox = Outbox(outbox_table, producer="trading")
    relay = OutboxRelay(engine, outbox_table, None, BusSettings(), registry=CollectorRegistry())  # type: ignore[arg-type]
    market = Market(7, tick_ms=1000, epoch=datetime(2026, 1, 1, tzinfo=UTC))
    ledger = Ledger(
        sessions, outbox, relay, market, starting_cash=CASH,
        row_locks=engine.dialect.name == "postgresql",
        unit_of_work=unit_of_work_for(engine, sessions),
    )  # fmt: skip
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def trader(w: int) -> None:
        me = Trader(user_id=f"u-bench-{w}", username=f"bench{w}")
        n = 0
        while time.monotonic() < stop:
            started = time.perf_counter()
            await ledger.place(me, "AAPL", "buy", Decimal("1"), idempotency_key=f"k-{n}")
            latencies.append(time.perf_counter() - started)
            n += 1

    await ledger.place(Trader("u-warm", "warm"), "AAPL", "buy", Decimal("1"))
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(trader(w) for w in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await ledger.aclose()
    await engine.dispose()
    return {
        "orders_per_s": round(len(latencies) / wall),
        "cpu_us_per_order": round(1e6 * cpu / len(latencies), 1),
        **_percentiles(latencies),
    }


# --- through the gateway: the capacity search ------------------------------------


def stack(out: Path, rate: float, max_rate: float, step_seconds: float) -> dict[str, Any]:
    run_id = f"bench-orders-{int(time.time())}"
    done = subprocess.run(
        [
            sys.executable, "-m", "loadtests", "capacity", "--up", "--mix", "orders",
            "--rate", str(rate), "--max-rate", str(max_rate), "--users", "10",
            "--seconds", str(step_seconds), "--no-ceiling", "--out", str(out),
            "--run-id", run_id,
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    found = out / f"{run_id}-capacity.json"
    if not found.exists():
        return {"error": (done.stdout + done.stderr)[-2000:]}
    result = json.loads(found.read_text())
    knee = result.get("knee") or {}
    return {
        "orders_per_s_at_slo": knee.get("orders_per_s"),
        "knee_rate": knee.get("rate"),
        "steps": [
            {k: s.get(k) for k in ("rate", "orders_per_s", "passed", "missed", "cpu")}
            for s in result["steps"]
        ],
    }


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.orders", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="each SQL leg")
    parser.add_argument("--concurrency", type=int, default=8, help="writers in the SQL legs")
    parser.add_argument("--postgresql", default="", help="a PostgreSQL URL for the twins")
    parser.add_argument("--no-stack", dest="stack", action="store_false")
    parser.add_argument("--rate", type=float, default=20.0, help="the capacity search's start")
    parser.add_argument("--max-rate", type=float, default=640.0)
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args()
    result: dict[str, Any] = {"concurrency": args.concurrency, "seconds": args.seconds}
    with tempfile.TemporaryDirectory() as folder:
        result["raw_sql"] = raw_sql(Path(folder), args.seconds, args.concurrency)
        sqlite_url = f"sqlite+aiosqlite:///{Path(folder) / 'ledger.db'}"
        result["ledger"] = asyncio.run(_ledger(sqlite_url, args.seconds, args.concurrency))
    if args.postgresql:
        result["ledger_postgresql"] = asyncio.run(
            _ledger(args.postgresql, args.seconds, args.concurrency)
        )
    result["orders_raw_sql_per_s"] = result["raw_sql"]["orders_per_s"]
    result["orders_ledger_per_s"] = result["ledger"]["orders_per_s"]
    if args.stack:
        args.out.mkdir(parents=True, exist_ok=True)
        result["stack"] = stack(args.out, args.rate, args.max_rate, args.step_seconds)
        result["orders_per_s_at_slo"] = result["stack"].get("orders_per_s_at_slo")
    for leg in ("raw_sql", "ledger", "ledger_postgresql"):
        if leg in result:
            print(leg, result[leg])
    print(json.dumps(result))


if __name__ == "__main__":
    cli()
