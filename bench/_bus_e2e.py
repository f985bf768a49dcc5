"""Publish -> handler latency at a steady rate, for `bench.bus`.

    child process (python -m bench._bus_e2e URL RATE SECONDS)      this process
    Publisher.publish, paced by the clock,        --XADD-->     Consumer.start(): XREADGROUP BLOCK
    data.sent_ns = time.monotonic_ns()                          handler: monotonic_ns() - sent_ns

Both processes read CLOCK_MONOTONIC, which Linux shares across processes, so the
difference is the real publish->handler delay (encode, XADD, wake-up, read,
decode, marker check), not a wall-clock estimate.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from backbone import keys
from backbone.bus.consumer import Consumer, Event, HandlerContext
from backbone.bus.publisher import Publisher
from bench._bus_legs import GROUP, READ_BATCH, SETTINGS, STREAM, Traded, TradeData, entries_of

T = TypeVar("T")
ENVELOPE_KEY = keys.ENVELOPE_FIELD.encode()
WARMUP_EVENTS = 100  # first events also pay for connection set-up and lazy imports


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    max_ms: float
    samples: int
    achieved_eps: float


class _Sink:
    """Latencies as the handler sees them; done once every published event arrived."""

    def __init__(self) -> None:
        self.latencies_ns: list[int] = []
        self.expected = 0  # known once the publisher has exited
        self.done = asyncio.Event()

    def record(self, sent_ns: int) -> None:
        self.latencies_ns.append(time.monotonic_ns() - sent_ns)
        if len(self.latencies_ns) == self.expected:
            self.done.set()


async def measure(url: str, rate: int, seconds: float, loop: str, *, raw: bool = False) -> Latency:
    """Bus consumer (or, `raw=True`, a bare XREADGROUP BLOCK loop) against a paced publisher."""
    redis = aioredis.Redis.from_url(url)
    await redis.flushall()
    sink = _Sink()
    stopping = asyncio.Event()
    stop: Callable[[], Awaitable[Any]]
    if raw:
        await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        task = asyncio.create_task(_raw_consume(redis, sink, stopping))

        async def stop_raw() -> None:
            stopping.set()
            await task

        stop = stop_raw
    else:

        async def handle(event: Event[TradeData], ctx: HandlerContext) -> None:
            sink.record(event.data.sent_ns)

        consumer = Consumer(
            redis,
            group=GROUP,
            consumer="e2e-1",
            handlers={Traded: handle},
            settings=SETTINGS,
            producer="bench",
            registry=CollectorRegistry(),
        )
        await consumer.start()
        stop = consumer.aclose
    try:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench._bus_e2e", url, str(rate), str(seconds), loop,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"e2e publisher exited with {child.returncode}")
        published, elapsed = out.decode().split()
        sink.expected = int(published)
        if len(sink.latencies_ns) < sink.expected:
            await asyncio.wait_for(sink.done.wait(), timeout=10)
    finally:
        await stop()
        await redis.aclose()
    if len(sink.latencies_ns) != sink.expected:
        raise RuntimeError(f"handled {len(sink.latencies_ns)} of {sink.expected} events")
    ms = sorted(ns / 1e6 for ns in sink.latencies_ns[WARMUP_EVENTS:])
    return Latency(
        p50_ms=statistics.median(ms),
        p99_ms=ms[min(len(ms) - 1, round(0.99 * len(ms)))],
        max_ms=ms[-1],
        samples=len(ms),
        achieved_eps=sink.expected / float(elapsed),
    )


async def _raw_consume(redis: aioredis.Redis, sink: _Sink, stopping: asyncio.Event) -> None:
    """The floor: XREADGROUP BLOCK, read the stamp out of the JSON, XACK the batch."""
    while not stopping.is_set():
        response = await redis.xreadgroup(
            GROUP, "raw-e2e", {STREAM: ">"}, count=READ_BATCH, block=SETTINGS.block_ms
        )
        entries = entries_of(response)
        for _, fields in entries:
            sink.record(orjson.loads(fields[ENVELOPE_KEY])["data"]["sent_ns"])
        if entries:
            await redis.xack(STREAM, GROUP, *[entry_id for entry_id, _ in entries])


async def _publish_paced(url: str, rate: int, seconds: float) -> tuple[int, float]:
    redis = aioredis.Redis.from_url(url)
    publisher = Publisher(redis, producer="bench", settings=SETTINGS, registry=CollectorRegistry())
    await redis.ping()
    total = int(rate * seconds)
    started = time.monotonic()
    for i in range(total):
        delay = started + i / rate - time.monotonic()
        if delay > 0:  # behind schedule: publish now, the clock sets the pace, not the sleeps
            await asyncio.sleep(delay)
        data = TradeData(
            trade_id=i,
            user_id=f"user-{i % 997}",
            symbol="BTC-USD",
            side="buy",
            quantity=1.0,
            price=64_000.5,
            sent_ns=time.monotonic_ns(),
        )
        await publisher.publish(Traded, data)
    elapsed = time.monotonic() - started
    await redis.aclose()
    return total, elapsed


def run_loop(main: Coroutine[Any, Any, T], loop: str) -> T:
    """Run on the stdlib loop or on uvloop (what uvicorn picks when it is installed)."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


if __name__ == "__main__":
    publishing = _publish_paced(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
    count, took = run_loop(publishing, sys.argv[4])
    print(count, took)
