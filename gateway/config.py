"""The gateway's one typed settings object, read from `ASTRA_*` variables.

Host and port are the gateway's own (`ASTRA_GATEWAY_HOST`, `ASTRA_GATEWAY_PORT`,
as the stack launcher sets them); everything shared with the services keeps the
plain `ASTRA_` prefix (`ASTRA_REDIS_URL`, `ASTRA_RUN_DIR`, `ASTRA_REGISTRY__TOKEN`).
Nested parts use `__`: `ASTRA_UPSTREAM__TOTAL_TIMEOUT=3`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from backbone.config import require_secret
from backbone.http_server import HttpLimits
from backbone.process import ProcessSettings
from contracts.services import SERVICES as SERVICES  # re-exported: gateway.public_api reads it


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UpstreamSettings(_Part):
    connect_timeout: float = Field(default=0.5, gt=0)  # seconds
    total_timeout: float = Field(default=10.0, gt=0)  # seconds, unless `timeouts` says
    timeouts: dict[str, float] = Field(default_factory=dict)  # total, by service
    # Total, by route: "POST /api/v1/trading/orders" (a route of the table in
    # gateway/public_api.py); wins over the route's declared timeout and the service's.
    # `ASTRA_UPSTREAM__ROUTE_TIMEOUTS=false` (a bool instead of the table) is the
    # defence switch below: it sets `route_timeouts_enabled`, and the table stays empty.
    route_timeouts: dict[str, float] = Field(default_factory=dict)
    # Off: every route waits the service's total timeout (`timeouts`, else
    # `total_timeout`), whatever its RouteSpec or `route_timeouts` declare (a chaos
    # drill's `--without-defence`: a slow login then hangs 10 s, not its route's few).
    route_timeouts_enabled: bool = True
    pool_limit: int = Field(default=1000, ge=1)  # keep-alive connections, all upstreams
    pool_limit_per_host: int = Field(default=200, ge=1)
    # An idle pooled connection is closed after this long: below the services' own
    # idle timeout (backbone.http_server `idle_timeout`, 5 s), so the gateway never
    # sends a request on a connection the service is closing at that moment.
    keepalive_seconds: float = Field(default=4.0, gt=0)
    # Off: a new connection per request (no keep-alive), for an upstream that mishandles
    # keep-alive, or to let a per-connection fault (Toxiproxy draws a toxic's toxicity
    # once per connection) reach every request rather than the first connections only.
    keepalive: bool = True
    max_body_bytes: int = Field(default=64 * 1024, ge=0)  # request bodies; 413 above
    # Passive outlier ejection (gateway/balancer.py): this many consecutive connection
    # errors/5xx eject an instance for `ejection_seconds`, doubling per repeat up to
    # `max_ejection_seconds`; so does a latency outlier (below).
    # Off: nothing is ever ejected, for failures or latency (plain least-outstanding).
    outlier_ejection: bool = True
    eject_after_failures: int = Field(default=3, ge=1)
    ejection_seconds: float = Field(default=5.0, gt=0)
    max_ejection_seconds: float = Field(default=60.0, gt=0)
    # Latency outliers: an instance whose latency EWMA (of its successful attempts,
    # weight `latency_ewma_alpha` per new sample) over at least `latency_min_samples`
    # exceeds both `latency_floor_seconds` and `latency_factor` x the median EWMA of its
    # non-ejected peers is ejected like a failing one, unless that would put more than
    # `max_ejection_share` of the service's instances out (at least one may always go).
    latency_floor_seconds: float = Field(default=0.2, gt=0)
    latency_factor: float = Field(default=3.0, gt=1)
    latency_min_samples: int = Field(default=3, ge=1)
    latency_ewma_alpha: float = Field(default=0.3, gt=0, le=1)
    max_ejection_share: float = Field(default=0.5, gt=0, le=1)
    # Retries, within ratio x requests + floor per window: the second attempt on an
    # instance not tried yet; a third (up to `max_attempts`) only after a
    # connection-level failure (reset, refused), on an instance other than the last one
    # tried: a reset belongs to one connection, and with two instances a blip on both
    # would otherwise fail the request (found by the reset-peer drill: 1 in ~400).
    # Off: never a second attempt, whatever the request or the budget.
    retries_enabled: bool = True
    max_attempts: int = Field(default=3, ge=1, le=5)
    # A read's first attempt gets this share of its timeout when a retry on another
    # instance could follow (Envoy's per_try_timeout); 1.0: the whole timeout, and a
    # read that timed out is not retried.
    per_try_share: float = Field(default=0.5, gt=0, le=1)
    retry_budget_ratio: float = Field(default=0.1, ge=0, le=1)
    retry_budget_floor: int = Field(default=10, ge=0)
    retry_budget_window_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _route_timeouts_switch(cls, data: Any) -> Any:
        """`route_timeouts` given as a bool (`ASTRA_UPSTREAM__ROUTE_TIMEOUTS=false`, JSON
        `false`/`true`, lower case) is the drills' switch: it sets `route_timeouts_enabled`."""
        if isinstance(data, dict) and isinstance(data.get("route_timeouts"), bool):
            data = {**data, "route_timeouts": {}, "route_timeouts_enabled": data["route_timeouts"]}
        return data

    def total_timeout_for(self, service: str) -> float:
        """A request's total timeout when its route declares none (`RouteSpec.timeout`)."""
        return self.timeouts.get(service, self.total_timeout)

    def attempt_timeout(self, service: str, route_timeout: float | None) -> float:
        """The total timeout of one attempt: the route's, capped by the service's (an
        operator who lowers a service's timeout lowers every route's); the service's
        when the route has none or route timeouts are switched off."""
        service_timeout = self.total_timeout_for(service)
        if route_timeout is not None and self.route_timeouts_enabled:
            return min(route_timeout, service_timeout)
        return service_timeout


class BreakerSettings(_Part):
    # Off: the breaker never opens; every request goes upstream however the service fails.
    enabled: bool = True
    failure_rate: float = Field(default=0.5, gt=0, le=1)  # opens at or above this rate
    window_seconds: float = Field(default=10.0, gt=0)
    min_requests: int = Field(default=20, ge=1)  # in the window before it may open
    cooldown_seconds: float = Field(default=5.0, gt=0)  # open -> half-open
    half_open_probes: int = Field(default=3, ge=1)  # concurrent probes; as many successes close


class FallbackSettings(_Part):
    # Off: no stale answer is ever stored or served; upstream errors reach the client as
    # they are (the upstream's own 5xx, or the gateway's 502/503/504 problem+json).
    enabled: bool = True
    stale_seconds: float = Field(default=60.0, ge=0)  # oldest answer served on error
    # Stale-if-slow: a cacheable GET whose upstream has not answered within this many
    # seconds gets the stale copy at once (marked `X-Astra-Fallback: stale-slow`), while
    # the call goes on in the background to judge the breaker and refresh the cache.
    # Under the read SLO's 250 ms threshold with room for the gateway's own time: a slow
    # service never makes an anonymous read slow. 0: wait (stale only on error).
    stale_after_seconds: float = Field(default=0.15, ge=0)
    max_entries: int = Field(default=2048, ge=0)
    max_body_bytes: int = Field(default=256 * 1024, ge=0)


class RateLimitRule(_Part):
    rate: float = Field(gt=0)  # sustained requests per second
    burst: int = Field(ge=1)  # requests allowed at once


class RateLimitSettings(_Part):
    default: RateLimitRule = RateLimitRule(rate=50, burst=100)
    auth: RateLimitRule = RateLimitRule(rate=0.2, burst=5)  # login/register, per client IP
    orders: RateLimitRule = RateLimitRule(rate=10, burst=20)  # order submission
    # Operator-token attempts per client IP (gateway/operator.py): a wrong or missing
    # token spends one; a right one spends almost nothing but is refused alike.
    operator: RateLimitRule = RateLimitRule(rate=0.2, burst=5)
    # Operator overrides, by route as the route table names it ("POST /api/v1/trading/orders"):
    # `routes` gives a route another policy; `policies` gives the rule of a policy that has
    # no field above (one a `RouteSpec` declared with its own default rule, or a new one).
    routes: dict[str, str] = Field(default_factory=dict)
    policies: dict[str, RateLimitRule] = Field(default_factory=dict)
    redis_timeout: float = Field(default=0.25, gt=0)  # seconds, then the in-memory limit
    redis_retry_seconds: float = Field(default=1.0, gt=0)  # skip Redis this long after a failure

    def rule(self, policy: str) -> RateLimitRule | None:
        """The configured rule of `policy`, or None when only a declaration may give one."""
        if policy in self.policies:
            return self.policies[policy]
        named = getattr(self, policy, None) if policy in type(self).model_fields else None
        return named if isinstance(named, RateLimitRule) else None


class EdgeSettings(HttpLimits):
    """The gateway's HTTP server limits (`backbone.http_server`): every client
    reaches the stack here, so one address may not hold every connection either."""

    max_connections_per_address: int | None = Field(default=256, ge=1)


class AuditSettings(_Part):
    enabled: bool = True
    publish_timeout: float = Field(default=2.0, gt=0)  # seconds, per attempt
    # An event is retried (same event id) until this long after its action; only then
    # is it counted lost. A slow or briefly absent Redis must not thin the trail
    # (found: a drill's 1.8 s Redis link lost 92 of ~100 audit events at 2 s, no retry).
    publish_deadline: float = Field(default=30.0, gt=0)
    max_pending: int = Field(default=1000, ge=1)  # publications in flight; dropped above
    # The trail keeps what is newer than `retention_seconds` AND within the caps:
    # time bounds how long an account's history is held, the caps bound memory.
    retention_seconds: int = Field(default=90 * 24 * 3600, ge=1)  # entries older are trimmed
    max_entries: int = Field(default=10_000, ge=1)  # global trail, newest kept
    max_entries_per_subject: int = Field(default=1000, ge=1)
    subject_ttl_seconds: int = Field(default=90 * 24 * 3600, ge=1)  # idle subjects' trails


class GatewaySettings(ProcessSettings):
    """Everything the gateway process needs (the shared part is `ProcessSettings`);
    tests build it directly.

    settings = GatewaySettings(port=0, redis_url=url, registry=RegistrySettings(...))
    """

    # The gateway's own address variables: `ASTRA_HOST`/`ASTRA_PORT` are the services'.
    host: str = Field(default="127.0.0.1", validation_alias="ASTRA_GATEWAY_HOST")
    port: int = Field(default=8000, ge=0, le=65535, validation_alias="ASTRA_GATEWAY_PORT")
    public_url: str = Field(default="", validation_alias="ASTRA_GATEWAY_PUBLIC_URL")
    services: tuple[str, ...] = SERVICES
    # Extra public route prefixes, "METHOD /path": the path and anything below it needs no
    # token, on top of the routes declared public (`RouteSpec.public` in gateway/public_api.py).
    # For test and development stacks; health and metrics are always public.
    public_routes: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ("http://localhost:3000",)
    cors_allow_credentials: bool = True
    # Bearer credential for the operator endpoints (/api/v1/services, /api/v1/audit).
    # No default: `astra up` generates one per stack (<run_dir>/secrets.json).
    operator_token: str = Field(
        default="", repr=False, validation_alias="ASTRA_GATEWAY_OPERATOR_TOKEN"
    )
    audit: AuditSettings = AuditSettings()
    edge: EdgeSettings = EdgeSettings()  # ASTRA_EDGE__MAX_HEADER_BYTES=16384, ...
    upstream: UpstreamSettings = UpstreamSettings()
    breaker: BreakerSettings = BreakerSettings()
    fallback: FallbackSettings = FallbackSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()

    def process_name(self) -> str:
        return "gateway"

    @model_validator(mode="after")
    def _gateway_checks(self) -> GatewaySettings:
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise ValueError("cors_origins may not contain '*' when credentials are allowed")
        require_secret("ASTRA_GATEWAY_OPERATOR_TOKEN", self.operator_token)
        return self


@cache
def get_settings() -> GatewaySettings:
    """The process's settings (tests build their own and pass them to `create_app`)."""
    return GatewaySettings()
