"""The process kit every deployable shares: one settings base, one `serve()`.

    class Settings(ProcessSettings):              # a service's or the gateway's settings
        ...
    serve(lambda: create_app(settings), name="trading", settings=settings,
          limits=settings.http)

`ProcessSettings` holds what every process reads from `ASTRA_*` (Redis, run
directory, JWT issuer and audience, bus, registry, telemetry, env, instance id)
and refuses a missing secret; `serve` sets up this process's JSON logs and
tracer, then runs uvicorn behind the HTTP limits of `backbone.http_server`.
The services (`backbone.service`) and the gateway both stand on it, so a shared
setting or a start-up step is written once.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import uvicorn
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio import Redis

from backbone.config import BusSettings, RegistrySettings, TelemetrySettings, require_secret
from backbone.http_server import HttpLimits, server_options
from backbone.redis_pool import parse_sentinels, redis_client
from backbone.telemetry.logs import setup_logging
from backbone.telemetry.tracing import build_tracer_provider, install_tracer_provider

METRICS_URL = "metrics_url"  # the registry metadata key of ProcessSettings.metrics_url


class ProcessSettings(BaseSettings):
    """`ASTRA_*` variables every process reads; nested parts use `__` (ASTRA_BUS__BATCH_SIZE)."""

    model_config = SettingsConfigDict(
        env_prefix="ASTRA_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    version: str = "0.1.0"
    env: Literal["dev", "test", "prod"] = "dev"
    instance_id: str = ""  # stable per slot (`trading-1`) so a restart drains its own pending
    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=0, le=65535)
    public_url: str = ""  # what the registry advertises; default http://host:port
    # Where to scrape /metrics when public_url is not this process (a chaos proxy in front
    # of it): registered as metadata[METRICS_URL], which stack.observe.sd prefers.
    metrics_url: str = ""
    redis_url: str = "redis://127.0.0.1:6390/0"
    # "host:port,host:port": the primary these Sentinels name (`redis_sentinel_master`)
    # instead of redis_url's host; its credentials and database still come from it.
    redis_sentinels: str = ""
    redis_sentinel_master: str = "astra"
    # True: redis_url names one node of a Redis Cluster; the client learns the rest.
    redis_cluster: bool = False
    run_dir: Path = Path("var")
    jwks_url: str = ""  # users service JWKS; default discovered through the registry
    jwt_issuer: str = "astratrade-users"
    jwt_audience: str = "astratrade"
    bus: BusSettings = BusSettings()
    registry: RegistrySettings = RegistrySettings()
    telemetry: TelemetrySettings = TelemetrySettings()

    def process_name(self) -> str:
        """What this process is called in logs, traces and its default instance id."""
        return "process"

    def registry_metadata(self) -> dict[str, str]:
        """What this process adds to its registry record's metadata."""
        return {METRICS_URL: self.metrics_url} if self.metrics_url else {}

    @model_validator(mode="after")
    def _shared_defaults_and_secrets(self) -> ProcessSettings:
        if not self.instance_id:
            name = f"{self.process_name()}-{socket.gethostname()}-{os.getpid()}"
            object.__setattr__(self, "instance_id", name)
        if not self.public_url:
            object.__setattr__(self, "public_url", f"http://{self.host}:{self.port}")
        require_secret("ASTRA_REGISTRY__TOKEN", self.registry.token)
        sentinels = parse_sentinels(self.redis_sentinels)  # refused here, not at first use
        if sentinels and self.redis_cluster:
            raise ValueError(
                "ASTRA_REDIS_SENTINELS and ASTRA_REDIS_CLUSTER: a Redis is either "
                "Sentinel-managed or a cluster, not both"
            )
        if self.bus.replica_acks is None:
            acks = 1 if sentinels or self.redis_cluster else 0
            object.__setattr__(self, "bus", self.bus.model_copy(update={"replica_acks": acks}))
        return self

    def redis(self, *, connect_timeout: float, socket_timeout: float, wait: float) -> Redis:
        """This process's Redis client: by URL, or through the Sentinels."""
        return redis_client(
            self.redis_url,
            connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
            wait_for_connection=wait,
            sentinels=parse_sentinels(self.redis_sentinels),
            sentinel_master=self.redis_sentinel_master,
            cluster=self.redis_cluster,
        )


def serve(
    app_factory: Callable[[], Any],
    *,
    settings: ProcessSettings,
    limits: HttpLimits,
    **uvicorn_options: Any,
) -> None:
    """Process entry point: this process's logs and tracer, then uvicorn until SIGTERM.

    The app is built after the tracer provider is installed, so its middleware finds
    it. `limits` (header size and count, URL length, header and idle timeouts,
    connections per address) act in the HTTP protocol, before the app sees a request.
    """
    name = settings.process_name()
    tel = settings.telemetry
    setup_logging(
        service=name,
        instance_id=settings.instance_id,
        level=tel.log_level,
        log_dir=tel.log_dir or settings.run_dir / "log",
        stream=tel.log_stderr,
    )
    if tel.traces_dir is None:
        tel = tel.model_copy(update={"traces_dir": settings.run_dir / "traces"})
    provider = build_tracer_provider(
        tel, service=name, version=settings.version, instance_id=settings.instance_id
    )
    if provider is not None:
        install_tracer_provider(provider)
    try:
        uvicorn.run(
            app_factory(),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=20,
            **server_options(limits),
            **uvicorn_options,
        )
    finally:
        if provider is not None:
            provider.shutdown()
