"""A whole stack as `make up` starts it: `astra up` as a real process, on free ports.

    with running_stack(tmp_path, {"ASTRA_INSTANCES_trading": "2"}) as stack:
        stack.url("gateway-1"); stack.operator_headers; stack.redis_url_as("operator")

The e2e and the observability fixtures both start their stacks through here.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from contracts.services import SERVICES
from tests.support.poll import poll_until_sync

ROOT = Path(__file__).resolve().parents[2]

# Settings every test stack shares: short blocks, reaper and TTLs, so scenarios
# converge in seconds; every test client is 127.0.0.1, so the login/register
# limit (0.2/s per IP) is widened or each scenario would wait for tokens.
FAST_STACK_ENV = {
    "ASTRA_ENV": "test",
    "ASTRA_BUS__BLOCK_MS": "100",
    "ASTRA_BUS__CLAIM_IDLE_MS": "1000",
    "ASTRA_BUS__REAPER_INTERVAL_MS": "250",
    "ASTRA_REGISTRY__HEARTBEAT_SECONDS": "0.5",
    "ASTRA_REGISTRY__TTL_SECONDS": "1.5",
    "ASTRA_REGISTRY__POLL_SECONDS": "0.25",
    "ASTRA_TELEMETRY__LOG_LEVEL": "INFO",
    "ASTRA_RATE_LIMIT__AUTH__RATE": "50",
    "ASTRA_RATE_LIMIT__AUTH__BURST": "200",
}


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    run_dir: Path
    info: dict[str, Any]
    log: Path

    def url(self, name: str) -> str:
        for child in self.info["children"]:
            if child["name"] == name:
                return str(child["url"])
        raise KeyError(name)

    def has(self, name: str) -> bool:
        return any(c["name"] == name for c in self.info["children"])

    def refresh(self) -> None:
        self.info = json.loads((self.run_dir / "stack.json").read_text())

    def pid(self, name: str) -> int:
        for child in self.info["children"]:
            if child["name"] == name:
                return int(child["pid"])
        raise KeyError(name)

    @property
    def secrets(self) -> dict[str, Any]:
        """The per-stack secrets `astra up` generated (the file's mode is 0600)."""
        loaded: dict[str, Any] = json.loads(Path(self.info["secrets_file"]).read_text())
        return loaded

    @property
    def operator_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets['operator_token']}"}

    def redis_url_as(self, user: str) -> str:
        """The stack's Redis URL with that ACL user's credentials (e.g. read-only `operator`)."""
        parts = urlsplit(str(self.info["redis_url"]))
        password = quote(self.secrets["redis_passwords"][user], safe="")
        return f"redis://{user}:{password}@{parts.hostname}:{parts.port}{parts.path}"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_offset(chaos: bool = False) -> int:
    """A port offset whose ports are all free, below the ephemeral range (32768+).

    `chaos`: the fault proxy's API and proxies too (stack.chaos: up to port 18200).
    """
    for _ in range(50):
        offset = random.randrange(10_000, 14_000 if chaos else 23_000, 100)
        # redis, gateway replicas, service instances, monitoring (9090-9199)
        ports = [6390, *range(8000, 8010), *range(8100, 8200), *range(9090, 9200)]
        if chaos:  # faultproxy API; Redis proxies; PostgreSQL proxies; gateway -> instance
            ports += [8474, *range(16000, 16010), *range(16100, 16200)]
            ports += [*range(17100, 17200), *range(18100, 18200)]
        if all(_port_free(port + offset) for port in ports):
            return offset
    raise RuntimeError("no free port range for a stack")


@contextmanager
def running_stack(tmp: Path, env: Mapping[str, str] = {}) -> Iterator[Stack]:
    """`astra up` under `tmp`; stopped with SIGTERM after, which must exit 0."""
    missing = [s for s in SERVICES if not (ROOT / "services" / s / "__main__.py").exists()]
    if missing:
        pytest.skip(f"services not built yet: {missing}")
    run_dir = tmp / "var"
    full_env = {
        **os.environ,
        "ASTRA_RUN_DIR": str(run_dir),
        "ASTRA_PORT_OFFSET": str(free_offset(env.get("ASTRA_CHAOS", "") in ("1", "true"))),
        **FAST_STACK_ENV,
        "PYTHONPATH": str(ROOT),
        **env,
    }
    log_path = tmp / "astra-up.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "stack.cli", "up"],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        poll_until_sync(
            lambda: (run_dir / "stack.json").exists() or process.poll() is not None,
            "astra up to report every process ready",
            timeout=90,
        )
        if process.poll() is not None:
            raise AssertionError(log_path.read_text()[-4000:])
        yield Stack(process, run_dir, json.loads((run_dir / "stack.json").read_text()), log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
            assert code == 0, log_path.read_text()[-4000:]
