"""Prometheus HTTP service discovery from the registry, plus the alert webhook sink.

    Prometheus ── GET /targets (http_sd_configs) ──> this process ── Discovery ──> Redis
    Alertmanager ── POST /alerts (webhook) ──────> this process ──> <run_dir>/alerts.jsonl

`python -m stack.observe.sd` (started by `astra up` before Prometheus). Discovery
follows every service in the registry, the gateway included, so an instance that
registers is scraped after one discovery poll plus one Prometheus SD refresh, and a
dead one disappears once its registration has lapsed (one registry TTL after its last
heartbeat) and the lapse's grace has run out. Lapsed instances stay targets for that
grace: one that lost Redis (its heartbeats ride the link that failed) is most likely
still running, and its metrics are what show why; one that died shows `up == 0` for
the grace instead of vanishing (ScrapeTargetDown). An instance behind a
chaos proxy (`astra up --chaos`) registers the proxy as its `url` and its own address
as `metadata["metrics_url"]`: Prometheus scrapes that one, so it sees the faults
without suffering them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backbone.config import RegistrySettings, require_secret
from backbone.process import METRICS_URL
from backbone.redis_pool import parse_sentinels, redis_client
from backbone.registry import Discovery, InstanceInfo
from backbone.registry._record import HostPolicy, RecordRejected

DISCOVERY: web.AppKey[Discovery] = web.AppKey("discovery", Discovery)
HOSTS: web.AppKey[HostPolicy] = web.AppKey("hosts", HostPolicy)
ALERTS_FILE: web.AppKey[Path] = web.AppKey("alerts_file", Path)


class ObserveSettings(BaseSettings):
    """What the discovery process reads from `ASTRA_*` (the same names services use)."""

    model_config = SettingsConfigDict(
        env_prefix="ASTRA_", env_nested_delimiter="__", extra="ignore"
    )

    redis_url: str = "redis://127.0.0.1:6390/0"
    redis_sentinels: str = ""  # as every process: the primary these Sentinels name
    redis_sentinel_master: str = "astra"
    redis_cluster: bool = False  # redis_url is one node of a Redis Cluster
    run_dir: Path = Path("var")
    registry: RegistrySettings = RegistrySettings()

    @model_validator(mode="after")
    def _secret(self) -> ObserveSettings:
        require_secret("ASTRA_REGISTRY__TOKEN", self.registry.token)  # to verify records
        return self


def scrape_url(info: InstanceInfo, hosts: HostPolicy | None = None) -> str:
    """`metadata["metrics_url"]` when set (and, given `hosts`, allowed), else `url`.

    Discovery checked `url` against the allowed hosts; the metrics URL is held to the
    same policy, so a record cannot point Prometheus anywhere its `url` could not.
    """
    metrics = info.metadata.get(METRICS_URL, "")
    if not metrics:
        return info.url
    if hosts is not None:
        try:
            hosts.check(metrics)
        except RecordRejected:
            return info.url
    return metrics


def targets(
    view: dict[str, tuple[InstanceInfo, ...]],
    hosts: HostPolicy | None = None,
    lapsed: dict[str, tuple[InstanceInfo, ...]] | None = None,
) -> list[dict[str, object]]:
    """The http_sd document: one target group per instance, labelled service/instance;
    `lapsed` instances (registration expired, within its grace) beside the live ones."""
    groups: list[dict[str, object]] = []
    lapsed = lapsed or {}
    for service in sorted({*view, *lapsed}):
        live = view.get(service, ())
        listed = {info.instance_id for info in live}
        gone = tuple(i for i in lapsed.get(service, ()) if i.instance_id not in listed)
        for info in (*live, *gone):
            address = urlsplit(scrape_url(info, hosts)).netloc
            if not address:
                continue
            groups.append(
                {
                    "targets": [address],
                    "labels": {
                        "service": service,
                        "instance": info.instance_id,
                        # meta labels are for relabelling only; they never reach a series
                        "__meta_astra_status": info.status,
                        "__meta_astra_version": info.version,
                        "__meta_astra_lapsed": "false" if info.instance_id in listed else "true",
                    },
                }
            )
    return groups


async def _targets(request: web.Request) -> web.Response:
    """Every live or lapsed instance of every registered service, as Prometheus http_sd
    JSON."""
    discovery, hosts = request.app[DISCOVERY], request.app[HOSTS]
    return web.Response(
        body=orjson.dumps(targets(discovery.all_instances(), hosts, discovery.all_lapsed())),
        content_type="application/json",
    )


async def _ready(request: web.Request) -> web.Response:
    stale = request.app[DISCOVERY].stale
    return web.json_response(
        {"status": "stale" if stale else "ready"}, status=503 if stale else 200
    )


async def _live(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _alerts(request: web.Request) -> web.Response:
    """Alertmanager webhook: append each notification, stamped, to alerts.jsonl."""
    try:
        payload = await request.json(loads=orjson.loads)
    except ValueError:
        return web.json_response({"error": "not JSON"}, status=400)
    line = orjson.dumps({"received_at": datetime.now(UTC).isoformat(), **payload}) + b"\n"
    path = request.app[ALERTS_FILE]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as out:  # one small append per notification
        out.write(line)
    return web.json_response({"status": "recorded"})


def create_app(
    discovery: Discovery, alerts_file: Path, hosts: HostPolicy | None = None
) -> web.Application:
    app = web.Application()
    app[DISCOVERY] = discovery
    app[HOSTS] = hosts or HostPolicy(RegistrySettings().allowed_hosts)
    app[ALERTS_FILE] = alerts_file
    app.router.add_get("/targets", _targets)
    app.router.add_post("/alerts", _alerts)
    app.router.add_get("/health/ready", _ready)
    app.router.add_get("/health/live", _live)
    return app


async def serve(settings: ObserveSettings, host: str, port: int) -> None:
    redis = redis_client(
        settings.redis_url,
        connect_timeout=2.0,
        socket_timeout=settings.registry.ttl_seconds / 2,
        wait_for_connection=2.0,
        max_connections=16,
        sentinels=parse_sentinels(settings.redis_sentinels),
        sentinel_master=settings.redis_sentinel_master,
        cluster=settings.redis_cluster,
    )
    discovery = Discovery(redis, settings.registry, services=None)
    await discovery.start()
    hosts = HostPolicy(settings.registry.allowed_hosts)
    runner = web.AppRunner(create_app(discovery, settings.run_dir / "alerts.jsonl", hosts))
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, host, port).start()
        print(f"service discovery on http://{host}:{port}/targets", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
        await discovery.aclose()
        with contextlib.suppress(Exception):
            await redis.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stack.observe.sd", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9099)
    args = parser.parse_args(argv)
    asyncio.run(serve(ObserveSettings(), args.host, args.port))


if __name__ == "__main__":
    main()
