"""The whole stack, started the way `make up` starts it: `astra up` as a real process."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.poll import poll_until_sync

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("users", "trading", "gamification", "nft", "social")


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    run_dir: Path
    info: dict[str, object]

    def url(self, name: str) -> str:
        for child in self.info["children"]:  # type: ignore[attr-defined]
            if child["name"] == name:
                return str(child["url"])
        raise KeyError(name)

    def refresh(self) -> None:
        self.info = json.loads((self.run_dir / "stack.json").read_text())

    def pid(self, name: str) -> int:
        for child in self.info["children"]:  # type: ignore[attr-defined]
            if child["name"] == name:
                return int(child["pid"])
        raise KeyError(name)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_offset() -> int:
    """A port offset whose ports are all free, below the ephemeral range (32768+)."""
    for _ in range(50):
        offset = random.randrange(10_000, 23_000, 100)
        # redis, gateway replicas, service instances, monitoring (9090-9199)
        ports = [6390, *range(8000, 8010), *range(8100, 8200), *range(9090, 9200)]
        if all(_port_free(port + offset) for port in ports):
            return offset
    raise RuntimeError("no free port range for a stack")


@pytest.fixture
def stack_env() -> dict[str, str]:
    """Extra environment for `astra up`; override it in a test module to shape the stack."""
    return {}


@pytest.fixture
def stack(tmp_path: Path, stack_env: dict[str, str]) -> Iterator[Stack]:
    missing = [s for s in SERVICES if not (ROOT / "services" / s / "__main__.py").exists()]
    if missing:
        pytest.skip(f"services not built yet: {missing}")
    run_dir = tmp_path / "var"
    offset = free_offset()
    env = {
        **os.environ,
        "ASTRA_RUN_DIR": str(run_dir),
        "ASTRA_PORT_OFFSET": str(offset),
        "ASTRA_ENV": "test",
        "ASTRA_BUS__BLOCK_MS": "100",
        "ASTRA_BUS__CLAIM_IDLE_MS": "1000",
        "ASTRA_BUS__REAPER_INTERVAL_MS": "250",
        "ASTRA_REGISTRY__HEARTBEAT_SECONDS": "0.5",
        "ASTRA_REGISTRY__TTL_SECONDS": "1.5",
        "ASTRA_REGISTRY__POLL_SECONDS": "0.25",
        "ASTRA_TELEMETRY__LOG_LEVEL": "INFO",
        # Every test client is 127.0.0.1: the login/register limit (0.2/s per IP)
        # would make each scenario wait for tokens, so tests widen it.
        "ASTRA_RATE_LIMIT__AUTH__RATE": "50",
        "ASTRA_RATE_LIMIT__AUTH__BURST": "200",
        "PYTHONPATH": str(ROOT),
        **stack_env,
    }
    log = (tmp_path / "astra-up.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "stack.cli", "up"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        poll_until_sync(
            lambda: (run_dir / "stack.json").exists() or process.poll() is not None,
            "astra up to report every process ready",
            timeout=90,
        )
        if process.poll() is not None:
            raise AssertionError((tmp_path / "astra-up.log").read_text()[-4000:])
        stack = Stack(process, run_dir, json.loads((run_dir / "stack.json").read_text()))
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
            assert code == 0, (tmp_path / "astra-up.log").read_text()[-4000:]
        log.close()
