"""The processes bench.gateway measures: trading, the gateway and nginx, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from stack.netutil import free_port

# This run's own secrets: no process of the stack starts without them.
REGISTRY_TOKEN = secrets.token_urlsafe(32)
OPERATOR_TOKEN = secrets.token_urlsafe(32)

ROOT = Path(__file__).resolve().parents[1]
NGINX_TEMPLATE = Path(__file__).with_name("nginx") / "nginx.conf.template"


@dataclass
class Proc:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def _spawn(name: str, argv: list[str], env: dict[str, str], run_dir: Path, port: int) -> Proc:
    log = run_dir / f"{name}.out.log"
    handle = log.open("wb")
    process = subprocess.Popen(
        argv,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    handle.close()
    return Proc(name, port, process, log)


async def wait_http(proc: Proc, path: str, limit: float = 30.0, status: int = 200) -> None:
    """Poll `path` until it answers `status` (bounded), or fail with the process's output.

    Async: the bench's JWKS endpoint runs in the same event loop and must keep answering.
    """
    deadline = time.monotonic() + limit
    async with httpx.AsyncClient(timeout=1.0) as http:
        while time.monotonic() < deadline:
            if proc.process.poll() is not None:
                raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
            try:
                if (await http.get(proc.url + path)).status_code == status:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready at {path} within {limit}s:\n{proc.tail()}")


async def start_trading(run_dir: Path, redis_url: str, jwks_url: str) -> Proc:
    port = free_port()
    proc = _spawn(
        "trading-1",
        [sys.executable, "-m", "services.trading"],
        {
            "ASTRA_INSTANCE_ID": "trading-1",
            "ASTRA_HOST": "127.0.0.1",
            "ASTRA_PORT": str(port),
            "ASTRA_REDIS_URL": redis_url,
            "ASTRA_REGISTRY__TOKEN": REGISTRY_TOKEN,
            "ASTRA_RUN_DIR": str(run_dir / "trading"),
            "ASTRA_JWKS_URL": jwks_url,
        },
        run_dir,
        port,
    )
    await wait_http(proc, "/health/ready")
    return proc


async def start_gateway(run_dir: Path, redis_url: str, jwks_url: str) -> Proc:
    """Every feature on: JWT verification, Redis rate limits (a limit the load never
    reaches), breaker, metrics, access log, tracing at the default sampling."""
    port = free_port()
    proc = _spawn(
        "gateway",
        [sys.executable, "-m", "gateway"],
        {
            "ASTRA_INSTANCE_ID": "gateway-bench",
            "ASTRA_GATEWAY_HOST": "127.0.0.1",
            "ASTRA_GATEWAY_PORT": str(port),
            "ASTRA_REDIS_URL": redis_url,
            "ASTRA_REGISTRY__TOKEN": REGISTRY_TOKEN,
            "ASTRA_GATEWAY_OPERATOR_TOKEN": OPERATOR_TOKEN,
            "ASTRA_RUN_DIR": str(run_dir / "gateway"),
            "ASTRA_JWKS_URL": jwks_url,
            "ASTRA_SERVICES": '["trading"]',
            "ASTRA_RATE_LIMIT__DEFAULT__RATE": "1000000",
            "ASTRA_RATE_LIMIT__DEFAULT__BURST": "1000000",
            # For the fallback leg: the breaker must stay open while it is measured,
            # and must be the one deciding (not outlier ejection, which acts first).
            "ASTRA_BREAKER__COOLDOWN_SECONDS": "300",
            "ASTRA_UPSTREAM__EJECT_AFTER_FAILURES": "100000",
        },
        run_dir,
        port,
    )
    await wait_http(proc, "/health/ready")
    return proc


async def start_nginx(run_dir: Path, upstream_port: int) -> Proc:
    port = free_port()
    nginx_dir = run_dir / "nginx"
    nginx_dir.mkdir(parents=True, exist_ok=True)
    conf = nginx_dir / "nginx.conf"
    text = NGINX_TEMPLATE.read_text()
    for key, value in {
        "run_dir": str(nginx_dir),
        "upstream_port": str(upstream_port),
        "port": str(port),
    }.items():
        text = text.replace("{" + key + "}", value)
    conf.write_text(text)
    binary = "/usr/sbin/nginx"
    argv = [binary, "-c", str(conf), "-p", str(nginx_dir), "-e", str(nginx_dir / "nginx-error.log")]
    proc = _spawn("nginx", argv, {}, run_dir, port)
    await wait_http(proc, "/health/live")
    return proc
