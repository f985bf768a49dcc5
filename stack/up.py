"""`astra up`: Redis, the services and the gateway, in order, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import signal
import time
from pathlib import Path

from stack.config import SERVICES, StackSettings
from stack.observe.monitoring import monitoring_children
from stack.redis_server import RedisServer
from stack.supervisor import Child, Supervisor, python_module


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def service_children(settings: StackSettings, run_dir: Path, redis_url: str) -> list[list[Child]]:
    """One list per service (its instances start together), in dependency order."""
    groups: list[list[Child]] = []
    for service in SERVICES:
        if not _exists(f"services.{service}.__main__"):
            continue
        group = []
        for index in range(1, settings.instances(service) + 1):
            port = settings.service_port(service, index)
            instance = f"{service}-{index}"
            group.append(
                Child(
                    name=instance,
                    argv=python_module(f"services.{service}"),
                    env={
                        "ASTRA_INSTANCE_ID": instance,
                        "ASTRA_HOST": "127.0.0.1",
                        "ASTRA_PORT": str(port),
                        "ASTRA_REDIS_URL": redis_url,
                        "ASTRA_RUN_DIR": str(run_dir),
                        "ASTRA_TELEMETRY__LOG_STDERR": "false",  # the .jsonl file has them
                    },
                    url=f"http://127.0.0.1:{port}",
                    log_path=run_dir / "log" / f"{instance}.stderr.log",
                )
            )
        groups.append(group)
    if _exists("gateway.__main__"):
        group = []
        for index in range(1, settings.gateway_replicas + 1):
            port = settings.gateway_port(index)
            group.append(
                Child(
                    name=f"gateway-{index}",
                    argv=python_module("gateway"),
                    env={
                        "ASTRA_INSTANCE_ID": f"gateway-{index}",
                        "ASTRA_GATEWAY_HOST": "127.0.0.1",
                        "ASTRA_GATEWAY_PORT": str(port),
                        "ASTRA_REDIS_URL": redis_url,
                        "ASTRA_RUN_DIR": str(run_dir),
                        "ASTRA_TELEMETRY__LOG_STDERR": "false",
                    },
                    url=f"http://127.0.0.1:{port}",
                    log_path=run_dir / "log" / f"gateway-{index}.stderr.log",
                )
            )
        groups.append(group)
    return groups


async def run_stack(settings: StackSettings) -> int:
    started = time.monotonic()
    run_dir = settings.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    redis: RedisServer | None = None
    redis_url = settings.effective_redis_url
    if not settings.redis_url:
        redis = RedisServer(
            run_dir / "redis", port=settings.redis_port + settings.port_offset, appendonly=True
        )
        redis.start()
    supervisor = Supervisor(
        ready_timeout=settings.ready_timeout, backoff_max=settings.restart_backoff_max
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    startup = asyncio.create_task(_start_all(supervisor, settings, run_dir, redis_url))
    stopped = asyncio.create_task(stop.wait())
    try:
        # Ctrl-C during start-up stops at once instead of after everything is ready.
        await asyncio.wait({startup, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not startup.done():
            startup.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await startup
            print("stopping during start-up…", flush=True)
            return 0
        notes = startup.result()
        elapsed = time.monotonic() - started
        rows = [("redis", redis_url, str(redis.process.pid if redis and redis.process else "-"))]
        rows += [(c.name, c.url, str(c.pid)) for c in supervisor.children]
        _print_table(rows, elapsed)
        for note in notes:
            print(f"  note: {note}")
        if notes:
            print(flush=True)
        (run_dir / "stack.json").write_text(
            json.dumps(
                {
                    "redis_url": redis_url,
                    "ready_seconds": round(elapsed, 2),
                    "children": [
                        {"name": c.name, "url": c.url, "pid": c.pid} for c in supervisor.children
                    ],
                },
                indent=2,
            )
        )
        await stop.wait()
        print("stopping…", flush=True)
    except* RuntimeError as group:
        for error in group.exceptions:
            print(f"! {error}", flush=True)
        code = 1
    finally:
        stopped.cancel()
        await supervisor.aclose()
        if redis is not None:
            redis.stop()
        (run_dir / "stack.json").unlink(missing_ok=True)
    print("stopped", flush=True)
    return code


async def _start_all(
    supervisor: Supervisor, settings: StackSettings, run_dir: Path, redis_url: str
) -> list[str]:
    """Start each group once the one before is ready; a failing child stops its siblings.

    Returns notes about monitoring binaries that are not installed.
    """
    for group in service_children(settings, run_dir, redis_url):
        async with asyncio.TaskGroup() as tasks:
            for child in group:
                tasks.create_task(supervisor.start(child))
    notes: list[str] = []
    if settings.monitoring:
        monitoring, notes = monitoring_children(settings, run_dir, redis_url)
        for group in monitoring:
            async with asyncio.TaskGroup() as tasks:
                for child in group:
                    tasks.create_task(supervisor.start(child))
    return notes


def _print_table(rows: list[tuple[str, str, str]], elapsed: float) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\nAstraTrade is up ({elapsed:.1f}s to all-ready). Ctrl-C stops everything.\n")
    print(f"  {'process'.ljust(width)}  {'url'.ljust(28)}  pid")
    for name, url, pid in rows:
        print(f"  {name.ljust(width)}  {url.ljust(28)}  {pid}")
    print(flush=True)
