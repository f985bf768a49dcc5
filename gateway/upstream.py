"""Sending one request to a service: instance choice, budgeted retries, header hygiene.

    Outbound ──> Balancer.pick ──> aiohttp (pooled keep-alive) ──> Answer | Failure
                     ^                        │ connection error / 502-504 (or a read's
                     │                        │ per-try timeout), idempotent or keyed,
                     └── another instance <───┘ budget allows: a retry

A read that could be retried gets `per_try_share` of its timeout on the first
instance and the rest on the second: the route's timeout bounds both together. A
third attempt (`max_attempts`) follows only a connection-level failure of both.

`UpstreamSettings.retries_enabled=False` (`ASTRA_UPSTREAM__RETRIES_ENABLED=false`)
never retries; `route_timeouts_enabled=False` gives every attempt the service's
total timeout instead of its route's (`UpstreamSettings.attempt_timeout`).

Bodies are read whole: the services answer small JSON, and a complete answer is
what the retry, the breaker verdict and the stale cache need.

An answer never tells the client where the services are: a `Location` or
`Content-Location` that names a host of the answering instance or of any instance
discovery knows is rewritten to its path and query, which is the same resource
through the gateway (the services serve the public paths); one that cannot be
parsed is dropped. Other absolute URLs (another site) pass unchanged.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from backbone.registry import Discovery
from backbone.telemetry.correlation import get_correlation_id
from backbone.telemetry.propagation import current_traceparent
from gateway.balancer import Balancer, Verdict
from gateway.config import UpstreamSettings
from gateway.metrics import GatewayMetrics
from gateway.retry import RetryBudget

log = logging.getLogger("gateway.upstream")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Set by us from what we know, never passed on from the client.
_REPLACED = frozenset(
    {
        "host",
        "content-length",
        "expect",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
        "x-correlation-id",
        "traceparent",
        "tracestate",
    }
)
# Identity claims only a verified token may make: a client sending them is lying.
_IDENTITY_EXACT = frozenset(
    {"x-forwarded-user", "x-remote-user", "remote-user", "x-authenticated-user", "x-auth-user"}
)
_IDENTITY_PREFIXES = ("x-user", "x-auth-request-", "x-authenticated-", "x-forwarded-user")
_RESPONSE_DROPPED = frozenset({"content-length", "server", "date", "x-correlation-id"})
RETRIED_STATUSES = frozenset({502, 503, 504})
# Safe to send twice: always retryable. And only these get a per-try timeout (a first
# attempt of `UpstreamSettings.per_try_share` of the timeout, then a retry): a write
# that timed out may still be executing, and its retry would race it for its key.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

FailureKind = Literal["no_instance", "connect_error", "timeout", "breaker_open"]


def is_identity_header(name: str) -> bool:
    return name in _IDENTITY_EXACT or name.startswith(_IDENTITY_PREFIXES)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    instance_id: str


@dataclass(frozen=True, slots=True)
class Failure:
    kind: FailureKind
    detail: str


@dataclass(slots=True)
class Outbound:
    method: str
    target: str  # encoded path and query, as the client sent them: "/api/v1/x/y?z=1"
    headers: CIMultiDict[str]
    body: bytes
    retryable: bool
    timeout: float | None = None  # total seconds, from the route's spec; None: the service's
    attempts: list[str] = field(default_factory=list)  # instance ids tried


def outbound_headers(
    raw: Iterable[tuple[bytes, bytes]], *, client_ip: str, scheme: str
) -> CIMultiDict[str]:
    """The headers an upstream sees: hop-by-hop, forged identity and forwarding ones replaced."""
    headers: list[tuple[str, str]] = []
    dropped = set(HOP_BY_HOP)
    host = ""
    for name_b, value_b in raw:
        name = name_b.decode("latin-1").lower()
        if name == "connection":
            dropped |= {t.strip().lower() for t in value_b.decode("latin-1").split(",")}
        elif name == "host":
            host = value_b.decode("latin-1")
        headers.append((name, value_b.decode("latin-1")))
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers:
        if name in dropped or name in _REPLACED or is_identity_header(name):
            continue
        out.add(name, value)
    out["X-Forwarded-For"] = client_ip
    out["X-Forwarded-Proto"] = scheme
    if host:
        out["X-Forwarded-Host"] = host
    cid = get_correlation_id()
    if cid:
        out["X-Correlation-ID"] = cid
    traceparent = current_traceparent()
    if traceparent:
        out["traceparent"] = traceparent
    return out


_LOCATIONS = frozenset({b"location", b"content-location"})


def gateway_relative(value: bytes, internal_hosts: Callable[[], frozenset[str]]) -> bytes | None:
    """A Location as the client may see it: an internal URL becomes its path and query.

    gateway_relative(b"http://127.0.0.1:8101/api/v1/x?y=1", hosts)  # b"/api/v1/x?y=1"
    gateway_relative(b"/api/v1/x", hosts)                           # unchanged
    """
    try:
        url = URL(value.decode("latin-1"), encoded=True)
        host = url.host
    except (ValueError, UnicodeError):
        return None  # unreadable: it may still name an internal address
    if host is None:
        return value  # already relative to wherever the client sent the request
    # By host, not origin: another port on an instance's host is internal as well.
    if host.lower() not in internal_hosts():
        return value
    # One leading slash: "//evil.example/x" (or "/\evil...") would send browsers off-site.
    relative = "/" + url.raw_path.lstrip("/\\")
    if url.raw_query_string:
        relative += f"?{url.raw_query_string}"
    if url.raw_fragment:
        relative += f"#{url.raw_fragment}"
    return relative.encode("latin-1")


def _response_headers(
    raw: Iterable[tuple[bytes, bytes]], internal_hosts: Callable[[], frozenset[str]]
) -> list[tuple[bytes, bytes]]:
    dropped = set(HOP_BY_HOP) | _RESPONSE_DROPPED
    out = []
    for name, value in raw:
        lower = name.lower()
        if lower.decode("latin-1") in dropped:
            continue
        if lower in _LOCATIONS:
            rewritten = gateway_relative(value, internal_hosts)
            if rewritten is None:
                continue
            value = rewritten
        out.append((lower, value))
    return out


def _failed(result: Answer | Failure) -> bool:
    return isinstance(result, Failure) or result.status >= 500


class Upstreams:
    """The pooled client and the per-service balancers and retry budgets.

    upstreams = Upstreams(discovery, settings.upstream, metrics)
    await upstreams.start()
    result = await upstreams.forward("trading", outbound)
    await upstreams.aclose()
    """

    def __init__(
        self, discovery: Discovery, settings: UpstreamSettings, metrics: GatewayMetrics
    ) -> None:
        self._discovery = discovery
        self._settings = settings
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self._balancers: dict[str, Balancer] = {}
        self._budgets: dict[str, RetryBudget] = {}

    async def start(self) -> None:
        keepalive = self._settings.keepalive
        connector = aiohttp.TCPConnector(
            limit=self._settings.pool_limit,
            limit_per_host=self._settings.pool_limit_per_host,
            keepalive_timeout=self._settings.keepalive_seconds if keepalive else None,
            force_close=not keepalive,
            timeout_ceil_threshold=math.inf,  # see _attempt: timeouts are never rounded up
        )
        session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # pass encodings through untouched
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            cookie_jar=aiohttp.DummyCookieJar(),  # never share one user's cookies with another
        )
        # aiohttp silently re-sends a GET/PUT/DELETE whose reused connection was
        # closed or reset, to the same instance, outside the retry budget and unseen
        # by the metrics. The gateway owns retries (once, on another instance, counted
        # and budgeted), so that one is off. Private, like aiohttp's own test client
        # sets it; tests/gateway/test_upstream_retries.py fails if it stops working.
        session._retry_connection = False
        self._session = session

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def balancer(self, service: str) -> Balancer:
        balancer = self._balancers.get(service)
        if balancer is None:
            balancer = self._balancers[service] = Balancer(
                service, self._settings, on_eject=self._ejected
            )
        return balancer

    def _budget(self, service: str) -> RetryBudget:
        budget = self._budgets.get(service)
        if budget is None:
            budget = self._budgets[service] = RetryBudget(
                ratio=self._settings.retry_budget_ratio,
                floor=self._settings.retry_budget_floor,
                window_seconds=self._settings.retry_budget_window_seconds,
            )
        return budget

    def _ejected(self, service: str, instance_id: str, seconds: float, why: Verdict) -> None:
        self._metrics.ejections.labels(service).inc()
        log.warning(
            "ejected %s/%s for %.1fs: %s",
            service,
            instance_id,
            seconds,
            "consecutive failures" if why == "failures" else "latency outlier",
            extra={"service": service, "instance": instance_id, "reason": why},
        )

    def _internal_hosts(self, base: str) -> frozenset[str]:
        """The hosts of `base` and of every instance discovery knows (only asked when an
        answer carries a Location, so the hot path never builds it)."""
        urls = [base, *(i.url for found in self._discovery.all_instances().values() for i in found)]
        hosts = set()
        for url in urls:
            try:
                host = URL(url).host
            except ValueError:
                continue
            if host:
                hosts.add(host.lower())
        return frozenset(hosts)

    async def forward(self, service: str, request: Outbound) -> Answer | Failure:
        instances = self._discovery.instances(service)
        # Lapsed instances (record expired, not deregistered: `Discovery.lapsed`) are
        # routed beside the live ones on our own evidence: the first failed attempt
        # drops one (see `_attempt`), the grace bounds the rest.
        lapsed = self._discovery.lapsed(service)
        if lapsed:
            instances = (*instances, *lapsed)
        balancer = self.balancer(service)
        budget = self._budget(service)
        budget.record_request()
        result: Answer | Failure = Failure("no_instance", f"no ready instance of {service}")
        total = self._settings.attempt_timeout(service, request.timeout)
        # Per-try timeout: a read that a retry could save gets only a share of its time
        # on the first instance, so a hung instance costs it that share, not a 504.
        per_try = (
            request.method in SAFE_METHODS
            and self._settings.retries_enabled
            and len(instances) > 1
            and self._settings.per_try_share < 1.0
        )
        started = time.monotonic()
        while True:
            untried = any(i.instance_id not in request.attempts for i in instances)
            # Every instance tried (a third attempt, see below): any but the last one.
            exclude = request.attempts if untried else request.attempts[-1:]
            instance = balancer.pick(instances, exclude=exclude)
            if instance is None:
                return result
            request.attempts.append(instance.instance_id)
            if len(request.attempts) == 1:
                timeout = total * self._settings.per_try_share if per_try else total
            else:  # the retry: what is left of the route's total
                timeout = max(total - (time.monotonic() - started), 0.001)
            result = await self._attempt(
                service, balancer, instance.url, instance.instance_id, request, timeout
            )
            if lapsed and instance in lapsed and _failed(result):
                self._discovery.drop(service, instance.instance_id)
                log.warning(
                    "%s/%s: its registration lapsed and an attempt failed: no longer routed",
                    service,
                    instance.instance_id,
                    extra={"service": service, "instance": instance.instance_id},
                )
            retriable = (
                (isinstance(result, Failure) and result.kind == "connect_error")
                or (isinstance(result, Answer) and result.status in RETRIED_STATUSES)
                or (per_try and isinstance(result, Failure) and result.kind == "timeout")
            )
            attempts = len(request.attempts)
            if not (retriable and request.retryable and attempts < self._settings.max_attempts):
                return result
            if not self._settings.retries_enabled:
                return result  # the defence switched off: one attempt, whatever happened
            if not any(i.instance_id not in request.attempts for i in instances):
                # All tried: once more only after a connection-level failure, on an
                # instance other than the last one (never the same one twice running).
                connection_level = isinstance(result, Failure) and result.kind == "connect_error"
                others = any(i.instance_id != request.attempts[-1] for i in instances)
                if not (connection_level and others):
                    return result
            if not budget.try_retry():
                self._metrics.retries.labels(service, "budget_exhausted").inc()
                return result
            self._metrics.retries.labels(service, "retried").inc()

    async def _attempt(
        self,
        service: str,
        balancer: Balancer,
        base: str,
        instance_id: str,
        request: Outbound,
        seconds_allowed: float,
    ) -> Answer | Failure:
        assert self._session is not None, "Upstreams.start() was not awaited"
        # ceil_threshold: aiohttp rounds a timeout of 5 s or more up to the next whole
        # second of the loop's clock (timer coalescing), so a route's 5 s became up to
        # 6.0 s (found by the login-slow-close drill); the route's timeout is a promise.
        timeout = aiohttp.ClientTimeout(
            total=seconds_allowed,
            connect=min(self._settings.connect_timeout, seconds_allowed),
            ceil_threshold=math.inf,
        )
        url = URL(base.rstrip("/") + request.target, encoded=True)
        ok: bool | None = None
        seconds: float | None = None  # of a complete answer, for the latency outliers
        outcome = "cancelled"
        balancer.started(instance_id)
        started = time.perf_counter()
        try:
            async with self._session.request(
                request.method,
                url,
                headers=request.headers,
                data=request.body or None,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                body = await response.read()
            seconds = time.perf_counter() - started
            ok = response.status < 500
            outcome = "ok" if ok else "http_5xx"
            headers = _response_headers(response.raw_headers, lambda: self._internal_hosts(base))
            return Answer(response.status, headers, body, instance_id)
        except aiohttp.ConnectionTimeoutError as e:
            ok, outcome = False, "connect_error"
            return Failure("connect_error", f"connect timeout to {service}: {e!r}")
        except TimeoutError:
            ok, outcome = False, "timeout"
            return Failure("timeout", f"{service} did not answer in time")
        except aiohttp.ClientError as e:
            ok, outcome = False, "connect_error"
            return Failure("connect_error", f"{service} unreachable: {type(e).__name__}")
        finally:
            balancer.finished(instance_id, ok, seconds)
            self._metrics.upstream_requests.labels(service, outcome).inc()
            self._metrics.upstream_duration.labels(service).observe(time.perf_counter() - started)
