"""Security headers on every answer, and no caching of API answers unless they say public.

The API answers JSON only, so the content security policy forbids everything:
a response rendered by a browser by mistake can load nothing and be framed nowhere.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_FIXED = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", CSP.encode()),
    (b"cross-origin-resource-policy", b"same-origin"),
)
_FIXED_NAMES = frozenset(name for name, _ in _FIXED)
_NO_STORE = (b"cache-control", b"no-store")


class SecurityHeadersMiddleware:
    """app = SecurityHeadersMiddleware(app, api_prefix="/api/")

    Our values replace whatever the upstream said for the fixed headers; on API
    paths `Cache-Control: no-store` replaces any policy that is not `public`.
    """

    def __init__(self, app: ASGIApp, *, api_prefix: str = "/api/") -> None:
        self.app = app
        self.api_prefix = api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith(self.api_prefix)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _secured(message.get("headers", ()), api=api)
            await send(message)

        await self.app(scope, receive, send_wrapper)


def _secured(raw: object, *, api: bool) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    public = False
    for name, value in raw:  # type: ignore[attr-defined]
        lower = bytes(name).lower()
        if lower in _FIXED_NAMES:
            continue
        if lower == b"cache-control" and api:
            if b"public" not in value.lower():
                continue
            public = True
        headers.append((name, value))
    headers.extend(_FIXED)
    if api and not public:
        headers.append(_NO_STORE)
    return headers
