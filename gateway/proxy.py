"""The proxy path, as pure ASGI: `/api/v1/{service}/...` -> `{instance url}/api/v1/{service}/...`.

The services serve the public paths themselves, so the canonical path and the
query go on unchanged.

    request ─> canonical path ─> route ─> limit, auth ─> body cap ─> Upstreams.forward ─> answer
                   │400             │404      │429/401       │413          │ no instance / ...
                   └────────────────┴─────────┴──────────────┴─────────────┴──> problem+json

The path is made canonical first (`public_api.canonical_path`: `/x/` and `/x//y`
are `/x` and `/x/y`; dot segments and encoded separators are refused with 400),
for every request the gateway serves. Then the route table gives the request's
`RouteSpec` once (`PublicRoutes.resolve`), and every decision below reads it: the
public rule, the rate-limit policy and rule, the audit action, the retry rule, the
timeout, and the template and SLO class that label the metrics. So they are all
decided on the one path that is forwarded, and a trailing slash can neither change
a decision nor reach a service's redirect.

Everything here reads memory only (the Discovery cache); no Redis on the hot path.
Anything outside `/api/v1/` goes on to the wrapped app (health, metrics).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backbone.auth import Claims, bearer_token, challenge
from backbone.service.problems import problem_response
from backbone.telemetry.asgi import SLO_CLASS
from gateway.audit import AuditedExchange
from gateway.auth import InvalidToken, SigningKeysUnavailable
from gateway.fallback import Cached, cacheable_answer, cacheable_request
from gateway.middleware.access import note_upstream
from gateway.public_api import PREFIX, RouteSpec, canonical_path
from gateway.runtime import Gateway
from gateway.upstream import SAFE_METHODS, Answer, Failure, Outbound, outbound_headers

log = logging.getLogger("gateway.proxy")

STALE_IF_ERROR = frozenset({500, 502, 503, 504})  # RFC 5861


@dataclass(frozen=True, slots=True)
class RouteLabel:
    """Stands in `scope["route"]` so access logs and RED metrics name a bounded template."""

    path: str


class _ClientGone(Exception):
    """The client disconnected before its request body was complete."""


class _TooLarge(Exception):
    pass


def _noting(send: Send, exchange: AuditedExchange) -> Send:
    """`send`, also telling the exchange what the client was sent."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            exchange.status = message["status"]
        elif message["type"] == "http.response.body":
            exchange.note_answer(exchange.status, message.get("body", b""))
        await send(message)

    return wrapped


class ProxyMiddleware:
    """Answers `/api/v1/...` itself; everything else goes to `app`."""

    def __init__(self, app: ASGIApp, *, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        # Upstream calls that outlived a stale-if-slow answer, until they finish.
        self._background: set[asyncio.Future[Answer | Failure]] = set()
        self._services = frozenset(gateway.settings.services)
        self._routes = gateway.routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw: bytes = scope.get("raw_path") or quote(scope["path"]).encode("ascii")
        canonical = canonical_path(raw)
        if canonical is None:
            await problem_response(
                400,
                "Ambiguous path",
                "Paths may not contain '.' or '..' segments or encoded separators.",
            )(scope, receive, send)
            return
        # In place: the gateway's own routes, the access log and the span see it too.
        path, scope["raw_path"] = canonical
        scope["path"] = path
        service = path[len(PREFIX) :].split("/", 1)[0] if path.startswith(PREFIX) else ""
        if service not in self._services:  # the gateway's own routes, or a 404
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        route = self._routes.resolve(method, path, service)
        scope["route"] = RouteLabel(route.template)
        scope[SLO_CLASS] = route.slo_class
        if route.audit is None or not self.gateway.settings.audit.enabled:
            await self._guarded(scope, receive, send, service, route, None)
            return
        client = scope.get("client")
        exchange = AuditedExchange(
            route.audit,
            method,
            route.template,
            client[0] if client else "",
            started=time.perf_counter(),
            keeps_bodies=route.audit_bodies,
        )
        await self._guarded(scope, receive, _noting(send, exchange), service, route, exchange)
        # The client has the whole answer now: record what happened, off the client path.
        self.gateway.auditor.record(exchange)

    async def _guarded(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        service: str,
        route: RouteSpec,
        exchange: AuditedExchange | None,
    ) -> None:
        try:
            await self._proxy(scope, receive, send, service, route, exchange)
        except Exception:
            log.exception("proxy error", extra={"path": scope["path"]})
            await problem_response(500, detail="An unexpected error occurred.")(
                scope, receive, send
            )

    async def _proxy(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        service: str,
        route: RouteSpec,
        exchange: AuditedExchange | None,
    ) -> None:
        gw = self.gateway
        path: str = scope["path"]
        method: str = scope["method"]
        headers = scope["headers"]
        authorization = next((v for n, v in headers if n == b"authorization"), None)
        client = scope.get("client")
        client_ip: str = client[0] if client else ""
        policy, rule = route.policy, route.rule
        assert rule is not None, "PublicRoutes gives every route its rule"
        claims: Claims | None = None
        rejection: tuple[str, str, str] | None = None  # (metric reason, detail, challenge)
        if authorization is not None:
            token = bearer_token(authorization.decode("latin-1"))
            try:
                if token is None:
                    raise InvalidToken("not a bearer token")
                claims = await gw.auth.verify(token)
                if exchange is not None:
                    exchange.token_subject = claims.subject
            except InvalidToken as e:
                rejection = ("invalid", f"Invalid token: {e}", challenge("invalid_token"))
            except SigningKeysUnavailable as e:
                # Not the token's fault: 503, so a client retries instead of logging out.
                gw.metrics.auth_failures.labels("keys_unavailable").inc()
                if exchange is not None:
                    exchange.refused = "keys_unavailable"
                await problem_response(
                    503,
                    "Service Unavailable",
                    f"Cannot verify tokens now: {e}",
                    instance=path,
                    headers={"Retry-After": "1"},
                )(scope, receive, send)
                return
        elif not route.public:
            rejection = ("missing", "A bearer token is required.", challenge())
        # Keyed by the verified subject, else the peer address: never by a header. A
        # request that fails authentication is counted too (by address), so a flood of
        # forged or missing tokens is answered 429 once that address's budget is spent.
        subject = f"sub:{claims.subject}" if claims is not None else f"ip:{client_ip}"
        if policy == "auth":
            subject = f"ip:{client_ip}"
        decision = await gw.limiter.check(policy, rule, subject)
        send = _adding_headers(send, decision.headers())
        if not decision.allowed:
            if exchange is not None:
                exchange.refused = "rate_limited"
            await problem_response(
                429,
                "Too many requests",
                f"Rate limit {policy!r} exceeded; retry in {decision.retry_after}s.",
                instance=path,
                headers={"Retry-After": str(decision.retry_after)},
            )(scope, receive, send)
            return
        if rejection is not None:
            reason, detail, www_authenticate = rejection
            gw.metrics.auth_failures.labels(reason).inc()
            if exchange is not None:
                exchange.refused = "unauthenticated"
            await problem_response(
                401,
                "Unauthorized",
                detail,
                instance=path,
                headers={"WWW-Authenticate": www_authenticate},
            )(scope, receive, send)
            return
        try:
            body = await _read_body(scope, receive, gw.settings.upstream.max_body_bytes)
        except _ClientGone:
            if exchange is not None:
                exchange.refused = "client_gone"
            return  # never forward a body the client did not finish sending
        except _TooLarge:
            if exchange is not None:
                exchange.refused = "too_large"
            await problem_response(
                413,
                "Request body too large",
                f"Bodies are limited to {gw.settings.upstream.max_body_bytes} bytes.",
                instance=path,
            )(scope, receive, send)
            return
        if exchange is not None and exchange.keeps_bodies:
            exchange.request_body = body
        target = scope["raw_path"].decode("latin-1")  # canonical, as the service will see it
        query: bytes = scope.get("query_string", b"")
        if query:
            target += "?" + query.decode("latin-1")
        outbound = Outbound(
            method=method,
            target=target,
            headers=outbound_headers(
                headers, client_ip=client_ip, scheme=scope.get("scheme", "http")
            ),
            body=body,
            retryable=method in SAFE_METHODS
            or (route.idempotency_key and any(n == b"idempotency-key" for n, _ in headers)),
            timeout=route.timeout,
        )
        breaker = gw.breakers[service]
        ticket = breaker.admit()
        cache_key = target if cacheable_request(method, headers) else None
        result: Answer | Failure
        if ticket is None:
            gw.metrics.breaker_rejections.labels(service).inc()
            result = Failure("breaker_open", f"{service} is failing; calls are paused")
        else:

            async def call() -> Answer | Failure:
                verdict: bool | None = None
                try:
                    answer = await gw.upstreams.forward(service, outbound)
                    if isinstance(answer, Answer):
                        verdict = answer.status < 500
                        if cache_key is not None and cacheable_answer(
                            answer.status, answer.headers
                        ):
                            gw.stale.store(cache_key, answer.headers, answer.body)
                    elif answer.kind != "no_instance":  # nobody to blame: no verdict
                        verdict = False
                    return answer
                finally:
                    breaker.record(ticket, verdict)

            slow_after = gw.settings.fallback.stale_after_seconds
            try:
                if cache_key is None or not slow_after or gw.stale.lookup(cache_key) is None:
                    result = await call()  # the common path: no task, no race
                else:
                    # A copy to fall back on: race the call against the read threshold.
                    pending = asyncio.ensure_future(call())
                    try:
                        done, _ = await asyncio.wait({pending}, timeout=slow_after)
                    except asyncio.CancelledError:  # the client left: so does its call
                        pending.cancel()
                        raise
                    if not done and (hit := gw.stale.lookup(cache_key)) is not None:
                        # The call goes on without the client: it still judges the breaker
                        # and refreshes the copy; the client gets the copy now, marked.
                        self._background.add(pending)
                        pending.add_done_callback(self._background.discard)
                        await self._send_stale(send, service, hit, b"stale-slow")
                        return
                    result = await pending
            finally:  # here, in the request's context: the access log reads it
                note_upstream(outbound.attempts[-1] if outbound.attempts else None)
        if exchange is not None:
            # Asked = audited, whatever came back: a timed-out order may have been placed.
            exchange.refused = None if outbound.attempts else "unavailable"
        if isinstance(result, Answer) and (
            cache_key is None or result.status not in STALE_IF_ERROR
        ):
            await _send_answer(send, result.status, result.headers, result.body)
            return
        if cache_key is not None and (hit := gw.stale.lookup(cache_key)) is not None:
            await self._send_stale(send, service, hit, b"stale-cache")
            return
        if isinstance(result, Answer):  # the upstream's own 502-504, nothing better to say
            await _send_answer(send, result.status, result.headers, result.body)
            return
        await self._unavailable(scope, receive, send, service, result)

    async def _send_stale(
        self, send: Send, service: str, hit: tuple[Cached, float], kind: bytes
    ) -> None:
        cached, age = hit
        self.gateway.metrics.fallbacks.labels(service, kind.decode().replace("-", "_")).inc()
        extra = [(b"x-astra-fallback", kind), (b"age", str(int(age)).encode())]
        await _send_answer(send, 200, [*cached.headers, *extra], cached.body)

    async def _unavailable(
        self, scope: Scope, receive: Receive, send: Send, service: str, failure: Failure
    ) -> None:
        self.gateway.metrics.fallbacks.labels(service, "unavailable").inc()
        retry_after = max(1, math.ceil(self.gateway.settings.registry.poll_seconds))
        if failure.kind == "breaker_open":
            retry_after = self.gateway.breakers[service].retry_after()
        if failure.kind == "timeout":
            status, title = 504, "Upstream timeout"
        elif failure.kind == "connect_error":
            status, title = 502, "Upstream unreachable"
        else:
            status, title = 503, "Service unavailable"
        await problem_response(
            status,
            title,
            failure.detail,
            instance=scope["path"],
            headers={"Retry-After": str(retry_after)},
            service=service,
        )(scope, receive, send)


def _adding_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return wrapped


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                if int(value) > limit:
                    raise _TooLarge
            except ValueError:
                pass
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_answer(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
