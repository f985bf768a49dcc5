"""CORS at the edge: listed origins only, preflights answered here, never `*` with credentials.

    OPTIONS + Origin + Access-Control-Request-Method ─> 204 (allowed) | 403 problem
    any other request with an allowed Origin ─> the answer + Access-Control-Allow-Origin

The allowed origin is echoed (never `*` when credentials are allowed; the settings
refuse that combination) with `Vary: Origin`, so caches keep answers per origin.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backbone.service.problems import problem_response

DEFAULT_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT_HEADERS = ("authorization", "content-type", "idempotency-key", "x-correlation-id")
DEFAULT_EXPOSE = (
    "x-correlation-id",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "retry-after",
)


class CorsMiddleware:
    """app = CorsMiddleware(app, origins=("https://app.example",), credentials=True)"""

    def __init__(
        self,
        app: ASGIApp,
        *,
        origins: Iterable[str],
        credentials: bool,
        methods: Iterable[str] = DEFAULT_METHODS,
        headers: Iterable[str] = DEFAULT_HEADERS,
        expose: Iterable[str] = DEFAULT_EXPOSE,
        max_age: int = 600,
    ) -> None:
        self.app = app
        self.origins = frozenset(o.rstrip("/") for o in origins)
        self.any_origin = "*" in self.origins
        if self.any_origin and credentials:
            raise ValueError("CORS: '*' may not be combined with credentials")
        self.credentials = credentials
        self.methods = frozenset(m.upper() for m in methods)
        self.headers = frozenset(h.lower() for h in headers)
        self._methods_value = ", ".join(sorted(self.methods)).encode()
        self._expose_value = ", ".join(expose).encode()
        self._max_age = str(max_age).encode()

    def allowed(self, origin: str) -> bool:
        return self.any_origin or origin in self.origins

    def _origin_headers(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        out = [
            (b"access-control-allow-origin", b"*" if self.any_origin else origin),
            (b"vary", b"Origin"),
        ]
        if self.credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        return out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin: bytes | None = None
        request_method: bytes | None = None
        request_headers = b""
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                request_method = value
            elif name == b"access-control-request-headers":
                request_headers = value
        if origin is None:
            await self.app(scope, receive, send)
            return
        ok = self.allowed(origin.decode("latin-1").rstrip("/"))
        if scope["method"] == "OPTIONS" and request_method is not None:
            await self._preflight(scope, receive, send, origin, ok, request_method, request_headers)
            return
        if not ok:  # the browser withholds the answer; nothing to add
            await self.app(scope, receive, send)
            return
        extra = [
            *self._origin_headers(origin),
            (b"access-control-expose-headers", self._expose_value),
        ]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (n, v)
                    for n, v in message.get("headers", ())
                    if not n.lower().startswith(b"access-control-")
                ]
                message["headers"] = [*kept, *extra]
            await send(message)

        await self.app(scope, receive, send_wrapper)

    async def _preflight(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        origin: bytes,
        ok: bool,
        method: bytes,
        requested: bytes,
    ) -> None:
        asked = [h.strip().lower() for h in requested.decode("latin-1").split(",") if h.strip()]
        refused = [h for h in asked if h not in self.headers]
        why = ""
        if not ok:
            why = "origin not allowed"
        elif method.decode("latin-1").upper() not in self.methods:
            why = f"method {method.decode('latin-1')!r} not allowed"
        elif refused:
            why = f"headers not allowed: {', '.join(refused)}"
        if why:
            response = problem_response(403, "CORS preflight refused", why, instance=scope["path"])
            await response(scope, receive, send)
            return
        headers = [
            *self._origin_headers(origin),
            (b"access-control-allow-methods", self._methods_value),
            (b"access-control-max-age", self._max_age),
        ]
        if asked:
            headers.append((b"access-control-allow-headers", ", ".join(asked).encode()))
        headers.append((b"vary", b"Access-Control-Request-Method, Access-Control-Request-Headers"))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
