"""A real service process rides out a Redis that goes away and comes back.

The gamification service runs as `python -m services.gamification`, as `astra up`
runs it, against a redis-server the test stops (SIGTERM) and restarts on the same
port without its data (no AOF): the consumer group, the registry record and the
stream are gone. The process must stay up, stay live, report not-ready naming
Redis, then come back by itself: group recreated, record re-registered, a trade
published after the restart turned into XP visible through its HTTP API.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from backbone import keys
from backbone.bus.publisher import Publisher
from backbone.config import BusSettings
from contracts.trading import TradeExecuted, TradeExecutedData
from stack.netutil import free_port
from stack.redis_server import RedisServer
from tests.support.events import trade_data
from tests.support.poll import poll_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INSTANCE = "gamification-outage-1"
HEARTBEAT_FAILURES = re.compile(
    r'^astra_registry_heartbeat_failures_total\{service="gamification"\} (\S+)$', re.M
)


class ServiceProcess:
    """One gamification process with fast kernel settings; its JSON log lines on demand."""

    def __init__(self, redis_url: str, run_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.run_dir = run_dir
        self.base = f"http://127.0.0.1:{self.port}"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.stderr = (run_dir / "stderr.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.gamification"],
            cwd=ROOT,
            env={
                **os.environ,
                "ASTRA_ENV": "test",
                "ASTRA_INSTANCE_ID": INSTANCE,
                "ASTRA_HOST": "127.0.0.1",
                "ASTRA_PORT": str(self.port),
                "ASTRA_REDIS_URL": redis_url,
                "ASTRA_RUN_DIR": str(run_dir),
                "ASTRA_JWKS_URL": "http://127.0.0.1:9/jwks.json",  # never fetched here
                "ASTRA_REGISTRY__TOKEN": "some-test-token-123",
                "ASTRA_REGISTRY__HEARTBEAT_SECONDS": "0.2",
                "ASTRA_REGISTRY__TTL_SECONDS": "0.6",
                "ASTRA_BUS__BLOCK_MS": "100",
                "ASTRA_BUS__CLAIM_IDLE_MS": "500",
                "ASTRA_BUS__REAPER_INTERVAL_MS": "100",
                "ASTRA_BUS__METRICS_SAMPLE_INTERVAL_MS": "200",
                "ASTRA_TELEMETRY__TRACING": "false",
                "ASTRA_TELEMETRY__LOG_STDERR": "false",
                **env,
            },
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> list[dict[str, Any]]:
        path = self.run_dir / "log" / f"{INSTANCE}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def messages(self, pattern: str, level: str | None = None) -> list[str]:
        found = re.compile(pattern)
        return [
            line["msg"]
            for line in self.log()
            if found.search(line["msg"]) and (level is None or line["level"] == level)
        ]

    def stop(self) -> int:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.stderr.close()
        return self.process.returncode


@pytest.fixture
def service() -> Iterator[Callable[..., ServiceProcess]]:
    started: list[ServiceProcess] = []

    def start(redis_url: str, run_dir: Path, **env: str) -> ServiceProcess:
        started.append(ServiceProcess(redis_url, run_dir, **env))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()


def trade(n: int) -> TradeExecutedData:
    return trade_data(n, "ada")


async def test_a_service_rides_out_a_redis_restart_that_lost_its_data(
    redis_factory: Callable[..., RedisServer],
    service: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    server = redis_factory()
    proc = service(server.url, tmp_path / "run")
    async with httpx.AsyncClient(base_url=proc.base, timeout=2.0) as http:

        async def ready_status() -> tuple[int, dict[str, Any]]:
            # Liveness is asserted at every step: it must never fail, whatever Redis does.
            assert proc.alive, "the service process exited"
            live = await http.get("/health/live")
            assert live.status_code == 200, live.text
            ready = await http.get("/health/ready")
            return ready.status_code, ready.json()

        async def up() -> bool:
            if not proc.alive:
                raise AssertionError(f"exited: {(tmp_path / 'run' / 'stderr.log').read_text()}")
            try:
                return (await http.get("/health/ready")).status_code == 200
            except httpx.TransportError:
                return False

        await poll_until(up, "the service ready", timeout=30)

        server.stop()  # SIGTERM; no AOF: the restarted Redis starts empty
        status, body = await poll_until(
            lambda: _not_ready(ready_status), "readiness 503 naming Redis", timeout=10
        )
        assert status == 503
        assert body["checks"]["redis"].startswith("unreachable")
        assert "redis: unreachable" in body["detail"]

        async def failed_beats() -> bool:
            await ready_status()
            match = HEARTBEAT_FAILURES.search((await http.get("/metrics")).text)
            return match is not None and float(match.group(1)) >= 8

        # Long enough for every loop to retry several times (beats every 0.2 s).
        await poll_until(failed_beats, "several failed heartbeats", timeout=10)

        server.start()  # same port, no data: no group, no stream, no registry record
        await poll_until(
            lambda: _ready(ready_status), "readiness back to 200 after the restart", timeout=15
        )

        redis = aioredis.Redis.from_url(server.url)
        try:
            record = keys.registry_instance("gamification", INSTANCE)
            await poll_until(lambda: redis.exists(record), "the instance re-registered", 5)
            publisher = Publisher(
                redis, producer="trading", settings=BusSettings(), registry=CollectorRegistry()
            )
            await publisher.publish(TradeExecuted, trade(1))

            async def xp() -> int:
                await ready_status()
                board = (await http.get("/api/v1/gamification/leaderboard")).json()
                return sum(row["xp"] for row in board if row["user_id"] == "u-ada")

            assert await poll_until(xp, "XP for the trade published after the restart", 10) > 0
        finally:
            await redis.aclose()
        assert proc.alive

    # Once per outage, not once per retry; and each loop said when it was back.
    read_loop = r"consumer gamification_xp_processors reading astra\.trading"
    assert len(proc.messages(read_loop + r".* lost Redis", "WARNING")) == 1
    assert len(proc.messages(read_loop + r".* reconnected to Redis")) == 1
    # The heartbeat failed >= 8 times and warns once: a pooled connection that died
    # with the old Redis is retried on a fresh socket (backbone.redis_pool), so the
    # first beat after recovery does not fail.
    assert len(proc.messages(r"heartbeat of gamification/.* failed", "WARNING")) == 1
    assert proc.messages(r"heartbeat of gamification/.* recovered .* \(re-registered\)")
    assert proc.messages(r"consumer group recreated")
    # And it still shuts down cleanly (uvicorn re-raises SIGTERM once it has finished).
    assert proc.stop() in (0, -signal.SIGTERM)
    assert proc.messages(r"^Application shutdown complete")


async def _not_ready(
    ready_status: Callable[[], Any],
) -> tuple[int, dict[str, Any]] | None:
    status, body = await ready_status()
    return (status, body) if status == 503 and "redis" in body.get("detail", "") else None


async def _ready(ready_status: Callable[[], Any]) -> bool:
    status, _ = await ready_status()
    return bool(status == 200)


async def test_a_service_started_before_redis_waits_for_it(
    service: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis")  # its port is chosen, nothing listens yet
    proc = service(server.url, tmp_path / "run")
    try:
        await poll_until(
            lambda: _logged(proc, "waiting up to 30.0s for Redis"), "the service waiting", 20
        )
        assert proc.alive
        server.start()
        async with httpx.AsyncClient(base_url=proc.base, timeout=2.0) as http:

            async def ready() -> bool:
                assert proc.alive, "the service gave up although Redis came within the budget"
                try:
                    return (await http.get("/health/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await poll_until(ready, "the service ready once Redis answers", timeout=20)
    finally:
        server.kill()


async def test_a_service_gives_up_on_a_redis_that_never_comes(
    service: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    proc = service(nowhere, tmp_path / "run", ASTRA_REGISTRY__STARTUP_WAIT_SECONDS="0.5")
    await poll_until(lambda: _exited(proc), "the service to exit", timeout=20)
    assert proc.process.returncode != 0
    assert proc.messages(r"Redis did not answer within 0\.5s; giving up", "ERROR")


async def _logged(proc: ServiceProcess, text: str) -> bool:
    return bool(proc.messages(re.escape(text)))


async def _exited(proc: ServiceProcess) -> bool:
    return not proc.alive
