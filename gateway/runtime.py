"""The parts a running gateway owns, opened in order and closed in reverse."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from backbone.bus.publisher import Publisher
from backbone.lifecycle import Lifecycle
from backbone.registry import Discovery, InstanceInfo, Registrar
from gateway.audit import AuditPublisher, AuditTrail, audit_trail_recorder
from gateway.auth import Authenticator
from gateway.breaker import CircuitBreaker, State
from gateway.config import GatewaySettings
from gateway.fallback import StaleCache
from gateway.metrics import BREAKER_STATES, GatewayMetrics, gateway_metrics
from gateway.public_api import PublicRoutes
from gateway.ratelimit import RateLimiter
from gateway.upstream import Upstreams

log = logging.getLogger("gateway")


class Gateway:
    """Built by `create_app` (no I/O), started and closed by its lifespan.

    gateway = Gateway(settings, registry)
    await gateway.start()    # Redis client, discovery, upstream pool, registration
    await gateway.aclose()   # the reverse
    """

    def __init__(self, settings: GatewaySettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        # The route table with the operator's overrides; a misspelt route or policy in
        # the settings fails here, before the gateway serves anything.
        self.routes = PublicRoutes.of(settings)
        self.metrics_registry = registry
        self.metrics: GatewayMetrics = gateway_metrics(registry)
        # Short timeouts: the edge must notice a Redis outage, not wait on it.
        self.redis: aioredis.Redis = settings.redis(
            connect_timeout=0.5, socket_timeout=1.0, wait=1.0
        )
        self.discovery = Discovery(
            self.redis, settings.registry, services=settings.services, registry=registry
        )
        self.upstreams = Upstreams(self.discovery, settings.upstream, self.metrics)
        self.breakers = {
            service: CircuitBreaker(service, settings.breaker, on_transition=self._transition)
            for service in settings.services
        }
        for service in settings.services:
            self.metrics.breaker_state.labels(service).set(0)
        self.stale = StaleCache(settings.fallback)
        self.auth = Authenticator(settings, self.discovery)
        self.limiter = RateLimiter(self.redis, settings.rate_limit, self.metrics)
        self.publisher = Publisher(
            self.redis, producer="gateway", settings=settings.bus, registry=registry
        )
        self.auditor = AuditPublisher(
            self.publisher, settings.audit, self.metrics, verify=self.auth.verify
        )
        self.audit_trail = AuditTrail(
            self.redis, retention_seconds=settings.audit.retention_seconds
        )
        self.recorder = audit_trail_recorder(
            self.redis,
            consumer=settings.instance_id,
            bus=settings.bus,
            settings=settings.audit,
            registry=registry,
        )
        self.registrar = Registrar(
            self.redis,
            InstanceInfo(
                service="gateway",
                instance_id=settings.instance_id,
                url=settings.public_url,
                version=settings.version,
                metadata=settings.registry_metadata(),
                status="ready",
            ),
            settings.registry,
            registry=registry,
        )
        self._parts = Lifecycle("gateway")

    def __repr__(self) -> str:
        return f"<Gateway {self.settings.instance_id} {self.discovery!r}>"

    def _transition(self, service: str, _before: State, to: State) -> None:
        self.metrics.breaker_state.labels(service).set(BREAKER_STATES[to])
        self.metrics.breaker_transitions.labels(service, to).inc()

    async def start(self) -> None:
        parts = self._parts
        parts.push(self.redis.aclose, "redis")
        parts.push(self.publisher.aclose, "publisher")
        await self.discovery.start()
        parts.push(self.discovery.aclose, "discovery")
        await self.upstreams.start()
        parts.push(self.upstreams.aclose, "upstreams")
        if self.settings.audit.enabled:
            try:
                await self.recorder.start()
                parts.push(self.recorder.aclose, "audit recorder")
            except Exception:  # the edge still serves; this replica records no trail
                log.exception("audit trail recorder did not start")
        parts.push(self.auditor.aclose, "auditor")  # closed before Redis and the recorder
        # Register last, so Prometheus (and operators) find only a working gateway.
        await self.registrar.start()
        parts.push(self.registrar.aclose, "registrar")
        log.info("gateway started", extra={"url": self.settings.public_url})

    async def aclose(self) -> None:
        """Close in reverse order of opening (each bounded, errors logged). Idempotent."""
        await self._parts.aclose()

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when some service has an instance to route to; `degraded` names what
        is missing.

        A service with no instance does not make the gateway unready: its routes answer
        an honest 503 while every other service's are served, and pulling every gateway
        replica out of rotation (a Kubernetes Service, a load balancer, the black-box
        probe) would turn one service's outage into the whole API's (found: a paused
        consumer paged GatewayProbeFailing). Likewise Redis unreachable: the gateway
        routes from its registry cache (while `registry.stale_cache` allows) and
        rate-limits in its own memory. Unready only with nothing to route to at all."""
        try:
            await asyncio.wait_for(self.redis.ping(), timeout=1.0)
            redis_state = "ok"
        except Exception as e:
            redis_state = f"unreachable: {type(e).__name__}"
        services = self.services_view()
        ready = any(s["instances"] for s in services.values())
        checks: dict[str, Any] = {"redis": redis_state, "services": services}
        # What each part says of itself, not a list assumed from the ping: the
        # limiter falls back at its first failed call, so a ping failure predicts it.
        degraded = []
        missing = [name for name, s in services.items() if not s["instances"]]
        if missing and ready:
            degraded.append(f"no instance of {', '.join(missing)}: their routes answer 503")
        if self.discovery.stale:
            age = self.discovery.last_refresh_age
            degraded.append(f"registry: routing from the cached view ({age:.0f} s old)")
        if self.limiter.in_memory or redis_state != "ok":
            degraded.append("rate limits: per replica, in memory")
        if self.auditor.failing:
            degraded.append(f"audit events: the last {self.auditor.failing} not published")
        if degraded:
            checks["degraded"] = degraded
        return ready, checks

    def services_view(self) -> dict[str, Any]:
        """Per service: breaker state and the instances discovery sees, with balancer state."""
        services: dict[str, Any] = {}
        for service in self.settings.services:
            balancer = self.upstreams.balancer(service)
            services[service] = {
                "breaker": self.breakers[service].state,
                "instances": [
                    {"id": i.instance_id, "url": i.url, **balancer.snapshot(i.instance_id)}
                    for i in self.discovery.instances(service)
                ]
                # Lapsed (record expired, answers still good) are still routed: say so.
                + [
                    {
                        "id": i.instance_id,
                        "url": i.url,
                        "lapsed": True,
                        **balancer.snapshot(i.instance_id),
                    }
                    for i in self.discovery.lapsed(service)
                ],
            }
        return services
