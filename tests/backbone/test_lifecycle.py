"""Lifecycle: reverse order, a failing or hanging part never keeps the others open."""

from __future__ import annotations

import asyncio

from backbone.lifecycle import Lifecycle


async def test_parts_close_in_reverse_and_failures_do_not_stop_the_rest() -> None:
    closed: list[str] = []

    def closer(name: str, *, fail: bool = False, hang: bool = False):  # type: ignore[no-untyped-def]
        async def close() -> None:
            if hang:
                await asyncio.sleep(60)
            closed.append(name)
            if fail:
                raise RuntimeError(name)

        return close

    parts = Lifecycle("test", timeout=0.2)
    parts.push(closer("redis"))
    parts.push(closer("relay", fail=True))
    parts.push(closer("consumer", hang=True))
    parts.push(closer("registrar"))
    await parts.aclose()
    assert closed == ["registrar", "relay", "redis"]  # the hung consumer was given up
    await parts.aclose()  # idempotent: nothing closes twice
    assert closed == ["registrar", "relay", "redis"]
