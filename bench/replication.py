"""`make bench-replication`: what WAIT costs a publisher (docs/scaling.md quotes it).

A private primary and one replica (`redis-server`, free ports, never 6379), the bus
`Publisher` publishing the same events with `replica_acks` 0 (no WAIT) and 1 (`WAIT 1`
after every publish or batch), in alternating rounds: single publishes (latency p50 and
p99, events/s at one client) and batches of 100 (events/s). Ratios are WAIT / no WAIT in
the same run, plus the publisher's CPU time per event, which moves far less than wall
time on a shared machine. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from backbone.bus.publisher import Publisher
from backbone.bus.streams import EventType
from backbone.config import BusSettings
from stack.redis_server import RedisServer


class Tick(BaseModel):
    n: int
    note: str


Ticked = EventType("bench", "ticked", 1, Tick)


async def _single(publisher: Publisher, count: int) -> dict[str, float]:
    latencies = []
    cpu, wall = time.process_time(), time.perf_counter()
    for n in range(count):
        started = time.perf_counter()
        await publisher.publish(Ticked, Tick(n=n, note="x" * 64))
        latencies.append(time.perf_counter() - started)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    latencies.sort()
    return {
        "events_per_s": count / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "cpu_us_per_event": 1e6 * cpu / count,
    }


async def _batched(publisher: Publisher, batches: int, size: int) -> dict[str, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for b in range(batches):
        await publisher.publish_batch(
            [(Ticked, Tick(n=b * size + i, note="x" * 64)) for i in range(size)]
        )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "events_per_s": batches * size / wall,
        "cpu_us_per_event": 1e6 * cpu / (batches * size),
    }


async def _leg(url: str, acks: int, count: int, batches: int) -> dict[str, Any]:
    redis = aioredis.Redis.from_url(url)
    settings = BusSettings(replica_acks=acks, replica_ack_timeout_ms=1000)
    publisher = Publisher(redis, producer="bench", settings=settings, registry=CollectorRegistry())
    try:
        await publisher.publish(Ticked, Tick(n=-1, note="warm-up"))
        return {
            "single": await _single(publisher, count),
            "batch_100": await _batched(publisher, batches, 100),
        }
    finally:
        await redis.aclose()


def _median(runs: list[dict[str, Any]], part: str, key: str) -> float:
    return float(statistics.median(r[part][key] for r in runs))


async def main(rounds: int, count: int, batches: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        primary = RedisServer(root / "primary").start()
        replica = RedisServer(
            root / "replica", extra_args=("--replicaof", "127.0.0.1", str(primary.port))
        ).start()
        try:
            probe = aioredis.Redis.from_url(replica.url)
            deadline = time.monotonic() + 20
            while (await probe.info("replication")).get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise RuntimeError("the replica did not sync")
                await asyncio.sleep(0.05)
            await probe.aclose()
            legs: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
            for r in range(rounds):
                for acks in (0, 1) if r % 2 == 0 else (1, 0):  # alternate the order
                    legs[acks].append(await _leg(primary.url, acks, count, batches))
        finally:
            replica.stop()
            primary.stop()
    result: dict[str, Any] = {"rounds": rounds, "single_events": count, "batches_of_100": batches}
    for acks, name in ((0, "no_wait"), (1, "wait_1")):
        runs = legs[acks]
        result[name] = {
            "single_events_per_s": round(_median(runs, "single", "events_per_s")),
            "single_p50_ms": round(_median(runs, "single", "p50_ms"), 3),
            "single_p99_ms": round(_median(runs, "single", "p99_ms"), 3),
            "single_cpu_us_per_event": round(_median(runs, "single", "cpu_us_per_event"), 1),
            "batch_events_per_s": round(_median(runs, "batch_100", "events_per_s")),
            "batch_cpu_us_per_event": round(_median(runs, "batch_100", "cpu_us_per_event"), 1),
        }
    base, wait = result["no_wait"], result["wait_1"]
    result["single_throughput_ratio"] = round(
        wait["single_events_per_s"] / base["single_events_per_s"], 3
    )
    result["batch_throughput_ratio"] = round(
        wait["batch_events_per_s"] / base["batch_events_per_s"], 3
    )
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replication", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=3000, help="single publishes a leg")
    parser.add_argument("--batches", type=int, default=100, help="batches of 100 a leg")
    args = parser.parse_args()
    result = asyncio.run(main(args.rounds, args.events, args.batches))
    for name in ("no_wait", "wait_1"):
        print(name, result[name])
    print(json.dumps(result))


if __name__ == "__main__":
    cli()
