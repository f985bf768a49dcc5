"""`create_app`: the gateway as one ASGI app.

TelemetryMiddleware ─> ProxyMiddleware ─┬─ /api/v1/{service}/... ─> upstream
(correlation, span, RED)                 └─ anything else ─> FastAPI routes
                                             (/health/live, /health/ready, /metrics)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY, CollectorRegistry

from backbone.service.app import metrics_response
from backbone.service.problems import install_problem_handlers, problem_response
from backbone.telemetry.asgi import TelemetryMiddleware
from backbone.telemetry.http_metrics import http_metrics
from gateway.config import GatewaySettings
from gateway.proxy import ProxyMiddleware
from gateway.runtime import Gateway


def create_app(settings: GatewaySettings, *, registry: CollectorRegistry = REGISTRY) -> FastAPI:
    gateway = Gateway(settings, registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await gateway.start()
        except BaseException:
            await gateway.aclose()
            raise
        try:
            yield
        finally:
            await gateway.aclose()

    app = FastAPI(
        title="AstraTrade gateway",
        version=settings.version,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = gateway
    install_problem_handlers(app)
    # add_middleware wraps: the last added runs first.
    app.add_middleware(ProxyMiddleware, gateway=gateway)
    app.add_middleware(TelemetryMiddleware, metrics=http_metrics(registry))

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok", "service": "gateway", "instance": settings.instance_id}

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        """Redis answers and every service has at least one ready instance."""
        ok, checks = await gateway.readiness()
        if not ok:
            return problem_response(503, "Not ready", "See checks.", checks=checks)
        return JSONResponse({"status": "ready", "checks": checks})

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus exposition."""
        return metrics_response(request, registry)

    return app
