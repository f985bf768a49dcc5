"""A small asyncio process supervisor: start in dependency order, wait until ready,
restart crashed children with back-off, stop everything in reverse order.

Why not honcho/supervisord: we need readiness gating (a service starts only
after the ones before it answer /health/ready), per-child restart back-off and
a graceful, ordered stop — about 150 lines on asyncio, with no extra daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

log = logging.getLogger("stack.supervisor")


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    url: str  # base URL; ready when GET {url}{ready_path} answers 200
    log_path: Path
    ready_path: str = "/health/ready"  # Prometheus and Alertmanager answer on /-/ready
    # A readiness check for children that speak no HTTP (Redis): replaces the GET.
    probe: Callable[[], Awaitable[bool]] | None = field(default=None, repr=False)
    # First restart delay, doubled per quick repeat; Redis comes back sooner than a
    # service would, since every other child waits on it.
    backoff_initial: float = 1.0
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    stopping: bool = False
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


class Supervisor:
    def __init__(
        self,
        *,
        ready_timeout: float = 30.0,
        backoff_max: float = 30.0,
        on_restart: Callable[[Child], None] | None = None,
    ) -> None:
        self.children: list[Child] = []
        self.on_restart = on_restart  # e.g. to publish the new pid
        self.ready_timeout = ready_timeout
        self.backoff_max = backoff_max
        self._closing = False

    async def start(self, child: Child) -> None:
        """Spawn `child`, wait for readiness, then watch it for crashes."""
        self.children.append(child)
        await self._spawn(child)
        await self.wait_ready(child)
        child.watcher = asyncio.create_task(self._watch(child), name=f"watch:{child.name}")

    async def _spawn(self, child: Child) -> None:
        child.log_path.parent.mkdir(parents=True, exist_ok=True)
        with child.log_path.open("ab") as out:
            child.process = await asyncio.create_subprocess_exec(
                *child.argv,
                env={**os.environ, **child.env},
                stdout=out,
                stderr=out,
                start_new_session=True,  # Ctrl-C reaches us, not the children directly
            )
        child.started_at = time.monotonic()

    async def wait_ready(self, child: Child) -> None:
        deadline = time.monotonic() + self.ready_timeout
        timeout = aiohttp.ClientTimeout(total=1.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                assert child.process is not None
                if child.process.returncode is not None:
                    raise RuntimeError(
                        f"{child.name} exited with {child.process.returncode} during start-up; "
                        f"see {child.log_path}"
                    )
                if child.probe is not None:
                    if await child.probe():
                        return
                else:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with session.get(f"{child.url}{child.ready_path}") as response:
                            if response.status == 200:
                                return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{child.name} not ready after {self.ready_timeout}s")
                await asyncio.sleep(0.1)

    async def _watch(self, child: Child) -> None:
        backoff = child.backoff_initial
        while not self._closing and not child.stopping:
            assert child.process is not None
            code = await child.process.wait()
            if self._closing or child.stopping:
                return
            lived = time.monotonic() - child.started_at
            if lived > 60:
                backoff = child.backoff_initial  # it ran fine for a while: a fresh failure
            log.warning(
                "child exited; restarting",
                extra={"child": child.name, "code": code, "backoff_s": backoff},
            )
            print(f"! {child.name} exited ({code}); restarting in {backoff:.1f}s", flush=True)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max)
            if self._closing:
                return
            child.restarts += 1
            await self._spawn(child)
            if self.on_restart is not None:
                self.on_restart(child)

    async def stop(self, child: Child, grace: float = 25.0) -> None:
        child.stopping = True
        proc = child.process
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            print(f"! {child.name} did not stop in {grace}s; killing", flush=True)
            proc.kill()
            await proc.wait()

    async def aclose(self) -> None:
        """Stop every child, last started first."""
        self._closing = True
        for child in reversed(self.children):
            await self.stop(child)
            if child.watcher is not None:
                child.watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await child.watcher


def python_module(module: str) -> list[str]:
    return [sys.executable, "-m", module]
