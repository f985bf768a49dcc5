"""Wait for a condition with a deadline instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def poll_until(
    check: Callable[[], Awaitable[T]],
    description: str,
    timeout: float = 5.0,
    interval: float = 0.02,
) -> T:
    """Await `check()` until it returns something truthy; fail with `description`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {description}; last={last!r}"
            )
        await asyncio.sleep(interval)


def poll_until_sync(
    check: Callable[[], T], description: str, timeout: float = 5.0, interval: float = 0.02
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {description}; last={last!r}"
            )
        time.sleep(interval)
