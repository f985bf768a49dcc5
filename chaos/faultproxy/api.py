"""Toxiproxy's HTTP API over a `ProxyCollection` (Toxiproxy's `api.go`): JSON in, JSON out.

This module holds every HTTP status code of the fault proxy, in `_STATUS`; the core
raises domain errors and knows nothing of HTTP. Bodies match Toxiproxy 2.x field for
field: a proxy is `{"name", "listen", "upstream", "enabled", "toxics"}`, a toxic
`{"attributes", "name", "type", "stream", "toxicity"}`, an error `{"error", "status"}`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from chaos.faultproxy.collection import ProxyCollection, ProxyPatch, ProxySpec
from chaos.faultproxy.errors import (
    BadRequestBody,
    DuplicateProxyName,
    FaultProxyError,
    InvalidStream,
    InvalidToxicType,
    ListenError,
    MissingField,
    ProxyAlreadyExists,
    ProxyNotFound,
    ToxicAlreadyExists,
    ToxicNotFound,
    UserAgentNotAllowed,
)
from chaos.faultproxy.proxy import Proxy
from chaos.faultproxy.toxics import ToxicWrapper

# The one table of status codes; anything not listed is a 500, as in Toxiproxy.
_STATUS: dict[type[FaultProxyError], int] = {
    UserAgentNotAllowed: 403,
    BadRequestBody: 400,
    MissingField: 400,
    InvalidStream: 400,
    InvalidToxicType: 400,
    ProxyNotFound: 404,
    ToxicNotFound: 404,
    ProxyAlreadyExists: 409,
    ToxicAlreadyExists: 409,
    ListenError: 500,  # Go's net.Listen error has no ApiError status
    DuplicateProxyName: 500,
}

COLLECTION: web.AppKey[ProxyCollection] = web.AppKey("collection", ProxyCollection)
VERSION: web.AppKey[str] = web.AppKey("version", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("chaos.faultproxy.api")


def create_api(collection: ProxyCollection, *, version: str) -> web.Application:
    """The aiohttp application; the server adds `/metrics` and runs it."""
    app = web.Application(middlewares=[_errors, _stop_browsers])
    app[COLLECTION] = collection
    app[VERSION] = version
    app.router.add_post("/reset", reset_state)
    app.router.add_get("/proxies", proxy_index)
    app.router.add_post("/proxies", proxy_create)
    app.router.add_post("/populate", populate)
    app.router.add_get("/proxies/{proxy}", proxy_show)
    app.router.add_post("/proxies/{proxy}", proxy_update)
    app.router.add_patch("/proxies/{proxy}", proxy_update)
    app.router.add_delete("/proxies/{proxy}", proxy_delete)
    app.router.add_get("/proxies/{proxy}/toxics", toxic_index)
    app.router.add_post("/proxies/{proxy}/toxics", toxic_create)
    app.router.add_get("/proxies/{proxy}/toxics/{toxic}", toxic_show)
    app.router.add_post("/proxies/{proxy}/toxics/{toxic}", toxic_update)
    app.router.add_patch("/proxies/{proxy}/toxics/{toxic}", toxic_update)
    app.router.add_delete("/proxies/{proxy}/toxics/{toxic}", toxic_delete)
    app.router.add_get("/version", version_show)
    return app


# -- bodies ---------------------------------------------------------------------------


def proxy_json(proxy: Proxy) -> dict[str, Any]:
    return {
        "name": proxy.name,
        "listen": proxy.listen,
        "upstream": proxy.upstream,
        "enabled": proxy.enabled,
        "toxics": [toxic_json(toxic) for toxic in proxy.toxics],
    }


def toxic_json(toxic: ToxicWrapper) -> dict[str, Any]:
    return {
        "attributes": toxic.toxic.attributes(),
        "name": toxic.name,
        "type": toxic.type,
        "stream": toxic.stream,
        "toxicity": toxic.toxicity,
    }


def error_json(error: FaultProxyError) -> dict[str, Any]:
    return {"error": str(error), "status": _STATUS.get(type(error), 500)}


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def _read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        raise BadRequestBody("EOF")  # what Go's decoder says about an empty body
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequestBody(str(e)) from e


# -- middleware ---------------------------------------------------------------------------


@web.middleware
async def _stop_browsers(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Toxiproxy refuses browsers so that a web page cannot drive it (CSRF).
    if request.headers.get("User-Agent", "").startswith("Mozilla/"):
        raise UserAgentNotAllowed()
    return await handler(request)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FaultProxyError as e:
        body = error_json(e)
        log.info(
            "request refused",
            extra={"method": request.method, "path": request.path, **body},
        )
        return _json(body, status=body["status"])
    except web.HTTPException as e:  # routing: unknown path or method
        return _json({"error": e.reason.lower(), "status": e.status}, status=e.status)
    except Exception as e:
        log.exception("request failed", extra={"method": request.method, "path": request.path})
        return _json({"error": str(e), "status": 500}, status=500)


# -- handlers ---------------------------------------------------------------------------


async def version_show(request: web.Request) -> web.Response:
    """The server version (Toxiproxy 2.x API)."""
    body = orjson.dumps({"version": request.app[VERSION]}) + b"\n"
    return web.Response(body=body, content_type="application/json", charset="utf-8")


async def reset_state(request: web.Request) -> web.Response:
    """Enable every proxy and remove every toxic."""
    await request.app[COLLECTION].reset()
    return web.Response(status=204)


async def proxy_index(request: web.Request) -> web.Response:
    """Every proxy, keyed by name, with its toxics."""
    proxies = request.app[COLLECTION].proxies()
    return _json({name: proxy_json(proxy) for name, proxy in proxies.items()})


async def proxy_create(request: web.Request) -> web.Response:
    """Create a proxy (enabled unless `enabled` is false)."""
    spec = ProxySpec.from_json(await _read_json(request))
    proxy = await request.app[COLLECTION].add(spec)
    return _json(proxy_json(proxy), status=201)


async def populate(request: web.Request) -> web.Response:
    """Create or replace a list of proxies."""
    try:
        body = await _read_json(request)
        if not isinstance(body, list):
            raise BadRequestBody("populate expects a JSON array of proxies")
        specs = [ProxySpec.from_json(item, position=i + 1) for i, item in enumerate(body)]
        proxies = await request.app[COLLECTION].populate(specs)
    except FaultProxyError as e:
        error = error_json(e)
        return _json({**error, "proxies": None}, status=error["status"])
    return _json({"proxies": [proxy_json(proxy) for proxy in proxies]}, status=201)


async def proxy_show(request: web.Request) -> web.Response:
    """One proxy with its toxics."""
    proxy = request.app[COLLECTION].get(request.match_info["proxy"])
    return _json(proxy_json(proxy))


async def proxy_update(request: web.Request) -> web.Response:
    """Change `enabled`, `listen` or `upstream`; the rest stays."""
    collection = request.app[COLLECTION]
    name = request.match_info["proxy"]
    collection.get(name)  # 404 before 400, as Toxiproxy
    patch = ProxyPatch.from_json(await _read_json(request))
    return _json(proxy_json(await collection.update(name, patch)))


async def proxy_delete(request: web.Request) -> web.Response:
    """Delete a proxy and drop its connections."""
    await request.app[COLLECTION].remove(request.match_info["proxy"])
    return web.Response(status=204)


async def toxic_index(request: web.Request) -> web.Response:
    """The toxics of a proxy."""
    proxy = request.app[COLLECTION].get(request.match_info["proxy"])
    return _json([toxic_json(toxic) for toxic in proxy.toxics])


async def toxic_create(request: web.Request) -> web.Response:
    """Add a toxic; it applies to open connections too."""
    proxy = request.app[COLLECTION].get(request.match_info["proxy"])
    toxic = proxy.toxics.add_json(await _read_json(request))
    return _json(toxic_json(toxic))


async def toxic_show(request: web.Request) -> web.Response:
    """One toxic."""
    proxy = request.app[COLLECTION].get(request.match_info["proxy"])
    return _json(toxic_json(proxy.toxics.get(request.match_info["toxic"])))


async def toxic_update(request: web.Request) -> web.Response:
    """Change a toxic's attributes or toxicity."""
    proxy = request.app[COLLECTION].get(request.match_info["proxy"])
    name = request.match_info["toxic"]
    proxy.toxics.get(name)
    toxic = proxy.toxics.update_json(name, await _read_json(request))
    return _json(toxic_json(toxic))


async def toxic_delete(request: web.Request) -> web.Response:
    """Remove a toxic."""
    proxy = request.app[COLLECTION].get(request.match_info["proxy"])
    proxy.toxics.remove(request.match_info["toxic"])
    return web.Response(status=204)
