"""`create_service_app`: one function that turns a ServiceSpec into a running FastAPI app."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client import generate_latest as text_exposition
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_exposition

from backbone.process import serve as serve_process
from backbone.service.config import ServiceSettings
from backbone.service.context import C, S
from backbone.service.problems import install_problem_handlers, problem_response
from backbone.service.runtime import Runtime, ServiceSpec
from backbone.telemetry.asgi import TelemetryMiddleware
from backbone.telemetry.http_metrics import http_metrics

log = logging.getLogger("backbone.service")

# FastAPI >= 0.16x instruments itself (a second server span per request, plus
# dependency/endpoint spans and its own metrics); TelemetryMiddleware already does
# what we want at a fraction of the cost, so the native layer is switched off.
NATIVE_TELEMETRY_OFF: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


def metrics_response(request: Request, registry: CollectorRegistry) -> Response:
    """Prometheus text, or OpenMetrics (which carries exemplars) when the scraper asks."""
    if "application/openmetrics-text" in request.headers.get("accept", ""):
        return Response(openmetrics_exposition(registry), media_type=OPENMETRICS)  # type: ignore[no-untyped-call]
    return Response(text_exposition(registry), media_type="text/plain; version=0.0.4")


def create_service_app(
    spec: ServiceSpec[S, C], settings: S, *, registry: CollectorRegistry = REGISTRY
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(spec, settings, registry)
        app.state.runtime = runtime
        try:
            await runtime.start()
        except BaseException:
            await runtime.aclose()
            raise
        try:
            yield
        finally:
            await runtime.aclose()

    app = FastAPI(
        title=f"AstraTrade {spec.name}",
        description=spec.description,
        version=settings.version,
        lifespan=lifespan,
        # A 307 to `/x` would name this instance's own address and skip the gateway's
        # policies on the second hop; `/x/` is a 404 here and canonical at the edge.
        redirect_slashes=False,
        **NATIVE_TELEMETRY_OFF,
    )
    install_problem_handlers(app)
    for error_type, handler in spec.exception_handlers.items():
        app.add_exception_handler(error_type, handler)
    app.add_middleware(TelemetryMiddleware, metrics=http_metrics(registry))

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "ok", "service": spec.name, "instance": settings.instance_id}

    @app.get("/health/ready", include_in_schema=False)
    async def ready(request: Request) -> JSONResponse:
        runtime: Runtime[S, C] = request.app.state.runtime
        checks = await runtime.checks()
        failing = {name: why for name, why in checks.items() if why != "ok"}
        if failing:
            return problem_response(
                503,
                "Not ready",
                "; ".join(f"{name}: {why}" for name, why in failing.items()),
                checks=checks,
            )
        return JSONResponse({"status": "ready", "checks": checks})

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        return metrics_response(request, registry)

    for router in spec.routers:
        app.include_router(router)
    return app


def serve(spec: ServiceSpec, settings: ServiceSettings) -> None:
    """Process entry point (`python -m services.<name>`): the process kit's `serve`."""
    serve_process(
        lambda: create_service_app(spec, settings), settings=settings, limits=settings.http
    )
