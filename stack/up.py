"""`astra up`: Redis, the services and the gateway, in order, until Ctrl-C.

Before anything starts: the stack's secrets (stack.secrets) and the Redis ACL
file (stack.redis_acl); every child gets only its own Redis user's URL and the
secrets its settings ask for.

Chaos mode (`--chaos`, stack.chaos): the fault proxy starts right after Redis, from
`<run_dir>/chaos/proxies.json`; each service instance then reaches Redis (and
PostgreSQL, when configured) through its own proxies and registers the proxy in
front of it as its URL, so the gateway's calls cross it too; its direct URL goes in
the registry record's metadata, for Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import time
from pathlib import Path

import aiohttp

from stack.chaos import ChaosConfigError, ProxySpec, api_port, config_text, proxies_for, via
from stack.config import SERVICES, StackSettings
from stack.observe.monitoring import monitoring_children
from stack.redis_acl import acl_file, stack_users, url_for, without_credentials
from stack.redis_server import RedisServer
from stack.secrets import SecretsError, StackSecrets, load_or_create, write_private
from stack.supervisor import Child, Supervisor, python_module


class StackRedis:
    """The Redis every process uses, and the URL each one connects with (as its own user)."""

    def __init__(self, settings: StackSettings, run_dir: Path, secrets: StackSecrets) -> None:
        self.url = settings.effective_redis_url  # without credentials: safe to print
        self._secrets = secrets
        self.child: Child | None = None
        if settings.redis_url:  # someone else's Redis: its URL is used as given
            self.url = without_credentials(settings.redis_url)
            self._given = settings.redis_url
            return
        self._given = ""
        data = run_dir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        aclfile = data / "users.acl"
        write_private(aclfile, acl_file(stack_users(), secrets.redis_passwords))
        server = RedisServer(
            data, port=settings.redis_port + settings.port_offset, appendonly=True, aclfile=aclfile
        )

        async def answers() -> bool:
            return await asyncio.to_thread(server.answers_ping)

        # Supervised like every other child: restarted with back-off when it exits,
        # and stopped last (it was started first), after every consumer has acked.
        self.child = Child(
            name="redis",
            argv=server.command(),
            env={},
            url=self.url,
            log_path=run_dir / "log" / "redis.stderr.log",
            probe=answers,
            backoff_initial=0.5,
        )

    def url_as(self, user: str, proxy: ProxySpec | None = None) -> str:
        """As `user`; through `proxy` (its listen address, same credentials) when given."""
        if self._given:
            return via(self._given, proxy.listen) if proxy else self._given
        base = via(self.url, proxy.listen) if proxy else self.url
        return url_for(base, user, self._secrets.redis_password(user))


Proxies = dict[str, ProxySpec]  # by name; empty when chaos mode is off


def faultproxy_child(settings: StackSettings, run_dir: Path, proxies: Proxies) -> Child:
    """The fault proxy, creating every proxy from its `-config` file (again on a restart)."""
    config = run_dir / "chaos" / "proxies.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(config_text(list(proxies.values())))
    port = api_port(settings)
    url = f"http://127.0.0.1:{port}"
    timeout = aiohttp.ClientTimeout(total=1.0)

    async def populated() -> bool:
        # Not just GET /version: a proxy it could not create (its port taken) is only
        # logged, and the stack must not start with a hop whose proxy is missing.
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"{url}/proxies") as response,
            ):
                if response.status != 200:
                    return False
                return set(proxies) <= set(await response.json())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False

    return Child(
        name="faultproxy",
        argv=[
            *python_module("chaos.faultproxy"),
            *("-host", "127.0.0.1", "-port", str(port), "-config", str(config)),
        ],
        env={},
        url=url,
        log_path=run_dir / "log" / "faultproxy.stderr.log",
        probe=populated,
        backoff_initial=0.5,  # every hop of the stack waits on it, as on Redis
    )


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def service_children(
    settings: StackSettings,
    run_dir: Path,
    redis: StackRedis,
    secrets: StackSecrets,
    proxies: Proxies | None = None,
) -> list[list[Child]]:
    """One list per service (its instances start together), in dependency order.

    With `proxies` (chaos mode), every hop of each child goes through its named proxy.
    """
    proxies = proxies or {}
    groups: list[list[Child]] = []
    for service in SERVICES:
        if not _exists(f"services.{service}.__main__"):
            continue
        group = []
        for index in range(1, settings.instances(service) + 1):
            port = settings.service_port(service, index)
            instance = f"{service}-{index}"
            direct = f"http://127.0.0.1:{port}"
            env = {
                "ASTRA_INSTANCE_ID": instance,
                "ASTRA_HOST": "127.0.0.1",
                "ASTRA_PORT": str(port),
                "ASTRA_REDIS_URL": redis.url_as(service, proxies.get(f"{instance}_redis")),
                "ASTRA_REGISTRY__TOKEN": secrets.registry_token,
                "ASTRA_RUN_DIR": str(run_dir),
                "ASTRA_TELEMETRY__LOG_STDERR": "false",  # the .jsonl file has them
            }
            if front := proxies.get(f"gateway_{instance}"):
                env["ASTRA_PUBLIC_URL"] = front.url  # the gateway calls us through it
                env["ASTRA_METRICS_URL"] = direct  # Prometheus does not
            if database := proxies.get(f"{instance}_postgres"):
                env["ASTRA_DATABASE_URL"] = via(settings.database_url, database.listen)
            group.append(
                Child(
                    name=instance,
                    argv=python_module(f"services.{service}"),
                    env=env,
                    url=direct,
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
                        "ASTRA_REDIS_URL": redis.url_as(
                            "gateway", proxies.get(f"gateway-{index}_redis")
                        ),
                        "ASTRA_REGISTRY__TOKEN": secrets.registry_token,
                        "ASTRA_GATEWAY_OPERATOR_TOKEN": secrets.operator_token,
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
    # Databases (password hashes), logs, the ACL and the secrets live here: no other
    # local user may read any of it.
    run_dir.chmod(0o700)
    try:
        secrets = load_or_create(
            settings.secrets_path,
            [user.name for user in stack_users()],
            generate=settings.env != "prod",  # prod: provisioned, never made up
        )
    except SecretsError as e:
        print(f"! {e}", flush=True)
        return 1
    try:
        proxies: Proxies = {p.name: p for p in proxies_for(settings)} if settings.chaos else {}
    except ChaosConfigError as e:
        print(f"! {e}", flush=True)
        return 1
    redis = StackRedis(settings, run_dir, secrets)
    state: dict[str, object] = {}

    def write_state(_: Child | None = None) -> None:
        """stack.json: what runs where (pids change when a child is restarted)."""
        if not state:
            return
        state["children"] = [
            {"name": c.name, "url": c.url, "pid": c.pid} for c in supervisor.children
        ]
        # Atomically (a temporary file, then rename): it is rewritten whenever a child
        # restarts, and readers (tests, drills, load runs) must never see half of it
        # (found: a test read it empty, mid-write).
        partial = run_dir / "stack.json.partial"
        partial.write_text(json.dumps(state, indent=2))
        os.replace(partial, run_dir / "stack.json")

    supervisor = Supervisor(
        ready_timeout=settings.ready_timeout,
        backoff_max=settings.restart_backoff_max,
        on_restart=write_state,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    startup = asyncio.create_task(
        _start_all(supervisor, settings, run_dir, redis, secrets, proxies)
    )
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
        rows = [(c.name, c.url, str(c.pid)) for c in supervisor.children]
        if redis.child is None:
            rows.insert(0, ("redis", redis.url, "-"))
        _print_table(rows, elapsed)
        print(f"  secrets: {settings.secrets_path} (operator token, Redis users)")
        for note in notes:
            print(f"  note: {note}")
        print(flush=True)
        state.update(
            pid=os.getpid(),  # the supervisor's, so a load run can time its CPU too
            redis_url=redis.url,  # no credentials: those are in the secrets file
            secrets_file=str(settings.secrets_path.resolve()),
            ready_seconds=round(elapsed, 2),
        )
        if proxies:
            state["chaos"] = {
                "api": f"http://127.0.0.1:{api_port(settings)}",
                "proxies": {
                    p.name: {"listen": p.listen, "upstream": p.upstream} for p in proxies.values()
                },
            }
        write_state()
        await stop.wait()
        print("stopping…", flush=True)
    except* RuntimeError as group:
        for error in group.exceptions:
            print(f"! {error}", flush=True)
        code = 1
    finally:
        stopped.cancel()
        await supervisor.aclose()  # Redis last: it was started first
        (run_dir / "stack.json").unlink(missing_ok=True)
    print("stopped", flush=True)
    return code


async def _start_all(
    supervisor: Supervisor,
    settings: StackSettings,
    run_dir: Path,
    redis: StackRedis,
    secrets: StackSecrets,
    proxies: Proxies,
) -> list[str]:
    """Start each group once the one before is ready; a failing child stops its siblings.

    Returns notes about monitoring binaries that are not installed.
    """
    if redis.child is not None:
        await supervisor.start(redis.child)
    if proxies:  # before any service: their Redis hops go through it
        await supervisor.start(faultproxy_child(settings, run_dir, proxies))
    for group in service_children(settings, run_dir, redis, secrets, proxies):
        async with asyncio.TaskGroup() as tasks:
            for child in group:
                tasks.create_task(supervisor.start(child))
    notes: list[str] = []
    if settings.monitoring:
        monitoring, notes = monitoring_children(settings, run_dir, redis.url_as, secrets)
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
