"""A consumer in its own process, for kill -9 and SIGTERM tests.

usage: bus_child.py REDIS_URL CONSUMER_NAME CRASH_AT HANDLER_DELAY_MS
Handler effects: INCR test:applied, HINCRBY test:per_event <event_id> 1.
CRASH_AT > 0: SIGKILL itself while handling the event with n == CRASH_AT, after
the earlier events of the same batch were handled but before the batch is acked.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import redis.asyncio as aioredis

from backbone.bus.consumer import Consumer, Event, HandlerContext
from backbone.config import BusSettings
from tests.support.events import Pinged


async def main(url: str, name: str, crash_at: int, delay_ms: int) -> None:
    redis = aioredis.Redis.from_url(url)

    async def handle(event: Event[Any], ctx: HandlerContext) -> None:
        if event.data.n == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        ctx.effects.call("INCR", "test:applied")
        ctx.effects.call("HINCRBY", "test:per_event", event.event_id, 1)
        await redis.incr("test:handled")  # outside the effects: counts handler runs

    settings = BusSettings(batch_size=50, block_ms=100, claim_idle_ms=200, reaper_interval_ms=100)
    consumer = Consumer(
        redis,
        group="g",
        consumer=name,
        handlers={Pinged: handle},
        settings=settings,
        producer="test",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await consumer.start()
    await redis.set(f"test:ready:{name}", 1)
    await stop.wait()
    await consumer.aclose()
    await redis.set(f"test:stopped:{name}", 1)
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
