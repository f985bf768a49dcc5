"""`create_app`: the gateway as one ASGI app.

Telemetry ─> SecurityHeaders ─> Cors ─> Proxy ─┬─ /api/v1/{service}/... ─> upstream
(cid, span,  (nosniff, CSP,     (preflights   └─ anything else ─> FastAPI routes
 RED, log)    no-store)          answered)       (health, metrics, openapi, operator)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from opentelemetry import trace
from prometheus_client import REGISTRY, CollectorRegistry

from backbone.service.app import NATIVE_TELEMETRY_OFF, metrics_response
from backbone.service.problems import install_problem_handlers, problem_response
from backbone.telemetry.asgi import TelemetryMiddleware
from backbone.telemetry.http_metrics import http_metrics
from gateway.config import GatewaySettings
from gateway.middleware import (
    CorsMiddleware,
    SecurityHeadersMiddleware,
    install_access_log_fields,
)
from gateway.operator import failing_checks, operator_detail
from gateway.operator import router as operator_router
from gateway.proxy import ProxyMiddleware
from gateway.public_api import openapi_document
from gateway.runtime import Gateway

SERVER_ERRORS = ("500", "502", "503", "504")  # what the gateway itself answers on failure


def create_app(
    settings: GatewaySettings,
    *,
    registry: CollectorRegistry = REGISTRY,
    tracer: trace.Tracer | None = None,
) -> FastAPI:
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
        # Never a redirect: the proxy already made the path canonical (no trailing slash).
        redirect_slashes=False,
        **NATIVE_TELEMETRY_OFF,
    )
    app.state.gateway = gateway
    install_problem_handlers(app)
    # add_middleware wraps: the last added runs first.
    app.add_middleware(ProxyMiddleware, gateway=gateway)
    app.add_middleware(
        CorsMiddleware, origins=settings.cors_origins, credentials=settings.cors_allow_credentials
    )
    app.add_middleware(SecurityHeadersMiddleware)
    http = http_metrics(registry)
    # The server errors of every declared route exist, at zero, from the first scrape:
    # `rate()` cannot see what a series held when it first appeared, so a 5xx series
    # born with an outage's first error would hide those errors from the SLO windows.
    for spec in gateway.routes.all():
        for status in SERVER_ERRORS:
            http.requests.labels(spec.method, spec.template, status, spec.slo_class)
    app.add_middleware(TelemetryMiddleware, metrics=http, tracer=tracer)
    install_access_log_fields()

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok", "service": "gateway", "instance": settings.instance_id}

    @app.get("/health/ready")
    async def ready(request: Request) -> JSONResponse:
        """Some service has an instance to route to; `degraded` (still 200) names what
        is missing: a service with no instance, Redis (routing from the registry cache)."""
        # Anyone may probe readiness, but instance URLs, ids and breaker state are
        # the operator's (as on /api/v1/services): without the token, only names.
        detail = await operator_detail(request)
        ok, checks = await gateway.readiness()
        status = "degraded" if "degraded" in checks else "ready"
        if detail:
            if not ok:
                return problem_response(503, "Not ready", "See checks.", checks=checks)
            return JSONResponse({"status": status, "checks": checks})
        if not ok:
            failing = failing_checks(checks)
            return problem_response(
                503, "Not ready", f"Failing: {', '.join(failing)}.", failing=failing
            )
        if status == "degraded":
            return JSONResponse({"status": status, "failing": failing_checks(checks)})
        return JSONResponse({"status": status})

    app.include_router(operator_router)
    document = openapi_document(settings)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        """The public API (the services' routes as clients reach them here)."""
        return JSONResponse(document)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus exposition."""
        return metrics_response(request, registry)

    return app
