"""Run an ASGI app under a real uvicorn server on a free port, inside the test's loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from prometheus_client import CollectorRegistry

from stack.netutil import free_port


@asynccontextmanager
async def serve_app(app: object, port: int | None = None, **options: Any) -> AsyncIterator[str]:
    """`options` go to `uvicorn.Config` as they are (`proxy_headers=False`, `http=...`)."""
    port = port or free_port()
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=port,
        log_config=None,
        **{"lifespan": "on", **options},
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # start-up failed: raise its error here
                raise RuntimeError("server exited during start-up")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=20)


@asynccontextmanager
async def service_client(
    create_app: Callable[..., Any], settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A service app (fresh metrics registry) under uvicorn on `settings.port`, and a client."""
    app = create_app(settings, registry=CollectorRegistry())
    async with serve_app(app, settings.port) as base, httpx.AsyncClient(base_url=base) as http:
        yield http
