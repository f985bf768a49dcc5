"""A bus consumer on a Redis Cluster in a process of its own, for kill tests.

    python tests/backbone/cluster_consumer_child.py CLUSTER_URL CONSUMER HANDLER_SECONDS KEY...

Consumes `test.pinged` as group `g`; each event's handler waits HANDLER_SECONDS, then
adds 1 to every KEY (effects: applied with the commit, slot by slot) and the event id
to the set `test:applied`. Prints "started" once its groups exist, then runs until killed.
"""

from __future__ import annotations

import asyncio
import sys

from prometheus_client import CollectorRegistry

from backbone.bus.consumer import Consumer, Event, HandlerContext
from backbone.config import BusSettings
from backbone.redis_pool import redis_client
from tests.support.events import Ping, Pinged


async def main(url: str, name: str, seconds: str, *keys: str) -> None:
    redis = redis_client(
        url, connect_timeout=1, socket_timeout=30, wait_for_connection=1, cluster=True
    )

    async def handle(event: Event[Ping], ctx: HandlerContext) -> None:
        await asyncio.sleep(float(seconds))
        for key in keys:
            ctx.effects.call("INCRBY", key, 1)
        ctx.effects.call("SADD", "test:applied", event.event_id)

    settings = BusSettings(block_ms=100, claim_idle_ms=600, reaper_interval_ms=200, batch_size=10)
    consumer = Consumer(
        redis, group="g", consumer=name, handlers={Pinged: handle}, settings=settings,
        producer="test", registry=CollectorRegistry(),
    )  # fmt: skip
    await consumer.start()
    print("started", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
