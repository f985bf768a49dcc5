"""Open parts in order, close them in reverse: one helper for the services and the gateway.

    parts = Lifecycle("gateway")
    await redis.ping(); parts.push(redis.aclose)       # closed last
    await relay.start(); parts.push(relay.aclose)
    ...
    await parts.aclose()   # relay, then redis; each bounded, errors logged, idempotent

Built on `contextlib.AsyncExitStack` (which does the reverse order); what it adds
is what a process shutting down needs: a part that hangs is given up after
`timeout` seconds and a part that fails is logged, and neither keeps the parts
before it from closing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

log = logging.getLogger("backbone.lifecycle")

Closer = Callable[[], Awaitable[Any]]


class Lifecycle:
    def __init__(self, name: str, *, timeout: float = 15.0) -> None:
        self.name = name
        self.timeout = timeout
        self._stack = AsyncExitStack()

    def push(self, closer: Closer, what: str = "") -> None:
        """Close `closer` before everything pushed earlier."""
        self._stack.push_async_callback(self._close_one, closer, what or repr(closer))

    async def _close_one(self, closer: Closer, what: str) -> None:
        try:
            await asyncio.wait_for(closer(), timeout=self.timeout)
        except Exception:
            log.exception("error while stopping", extra={"owner": self.name, "part": what})

    async def aclose(self) -> None:
        """Close everything pushed, last first. Idempotent."""
        await self._stack.aclose()
