"""The fault proxy server: proxies, their API and metrics, on one event loop.

async with FaultProxyServer(FaultProxySettings(port=0, seed=1)) as server:
    server.url                       # http://127.0.0.1:41234
    await server.collection.add(ProxySpec("redis", upstream="127.0.0.1:6390"))
"""

from __future__ import annotations

import logging
import random
import time
from types import TracebackType

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from chaos.faultproxy._addr import join_host_port
from chaos.faultproxy.api import create_api
from chaos.faultproxy.collection import ProxyCollection, ProxySpec
from chaos.faultproxy.config import FaultProxySettings
from chaos.faultproxy.errors import FaultProxyError
from chaos.faultproxy.metrics import FaultProxyMetrics

# Toxiproxy API level, plus our own version as semver build metadata.
VERSION = "2.12.0+faultproxy.0.1.0"


class FaultProxyServer:
    def __init__(
        self,
        settings: FaultProxySettings,
        *,
        registry: CollectorRegistry | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.settings = settings
        self.seed = settings.seed if settings.seed is not None else time.time_ns()
        self.logger = logger or logging.getLogger("chaos.faultproxy")
        self.metrics = FaultProxyMetrics(registry)
        self.collection = ProxyCollection(
            metrics=self.metrics,
            logger=self.logger.getChild("proxy"),
            rng=random.Random(self.seed),
        )
        self._runner: web.AppRunner | None = None
        self.port = settings.port

    def __repr__(self) -> str:
        return f"<FaultProxyServer {self.url} {self.collection!r}>"

    @property
    def url(self) -> str:
        return f"http://{join_host_port(self.settings.host, self.port)}"

    async def start(self) -> FaultProxyServer:
        """Load `-config` (errors are logged, as toxiproxy-server does), then serve the API."""
        if self.settings.config is not None:
            await self.populate_file()
        app = create_api(self.collection, version=VERSION)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        addresses = self._runner.addresses
        if addresses:  # the real port when asked for 0
            self.port = addresses[0][1]
        self.logger.info(
            "started fault proxy",
            extra={"url": self.url, "version": VERSION, "seed": self.seed},
        )
        return self

    async def populate_file(self) -> None:
        path = self.settings.config
        assert path is not None
        try:
            body = orjson.loads(path.read_bytes())
            if not isinstance(body, list):
                raise ValueError("the config file must hold a JSON array of proxies")
            specs = [ProxySpec.from_json(item, position=i + 1) for i, item in enumerate(body)]
            proxies = await self.collection.populate(specs)
        except (OSError, ValueError, FaultProxyError) as e:
            self.logger.error(
                "failed to populate proxies from file", extra={"config": str(path), "error": str(e)}
            )
            return
        self.logger.info(
            "populated proxies from file", extra={"config": str(path), "proxies": len(proxies)}
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self.collection.aclose()

    async def __aenter__(self) -> FaultProxyServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
