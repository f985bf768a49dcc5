"""`make bench-replication`: what WAIT costs a publisher (docs/scaling.md quotes it).

A private primary and one replica (`redis-server`, free ports, never 6379), the bus
`Publisher` publishing the same events with `replica_acks` 0 (no WAIT) and 1 (`WAIT 1`
after every publish or batch), in alternating rounds: single publishes (latency p50 and
p99, events/s at one client) and batches of 100 (events/s). Ratios are WAIT / no WAIT in
the same run, plus the publisher's CPU time per event, which moves far less than wall
time on a shared machine. The last line is one JSON object.

`--cluster`: the same on a local six-node Redis Cluster (three primaries, a replica
each): the single publishes go to one stream (one shard), each batch of 100 to six
streams spread over the shards, so a batch's WAIT is one per shard, sent in parallel.
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
from backbone.redis_pool import redis_client
from stack.redis_cluster import LocalCluster
from stack.redis_server import RedisServer


class Tick(BaseModel):
    n: int
    note: str


Ticked = EventType("bench", "ticked", 1, Tick)
# Six streams for a cluster's batches: their slots fall on every shard of three.
SPREAD = [EventType("bench", f"ticked_{n}", 1, Tick) for n in range(6)]


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


async def _batched(publisher: Publisher, batches: int, size: int, spread: bool) -> dict[str, float]:
    types = SPREAD if spread else [Ticked]
    cpu, wall = time.process_time(), time.perf_counter()
    for b in range(batches):
        await publisher.publish_batch(
            [(types[i % len(types)], Tick(n=b * size + i, note="x" * 64)) for i in range(size)]
        )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "events_per_s": batches * size / wall,
        "cpu_us_per_event": 1e6 * cpu / (batches * size),
    }


async def _leg(url: str, acks: int, count: int, batches: int, cluster: bool) -> dict[str, Any]:
    redis = redis_client(
        url, connect_timeout=2, socket_timeout=5, wait_for_connection=2, cluster=cluster
    )
    settings = BusSettings(replica_acks=acks, replica_ack_timeout_ms=1000)
    publisher = Publisher(redis, producer="bench", settings=settings, registry=CollectorRegistry())
    try:
        await publisher.publish(Ticked, Tick(n=-1, note="warm-up"))
        return {
            "single": await _single(publisher, count),
            "batch_100": await _batched(publisher, batches, 100, spread=cluster),
        }
    finally:
        await publisher.aclose()
        await redis.aclose()


def _median(runs: list[dict[str, Any]], part: str, key: str) -> float:
    return float(statistics.median(r[part][key] for r in runs))


async def main(rounds: int, count: int, batches: int, cluster: bool) -> dict[str, Any]:
    legs: dict[int, list[dict[str, Any]]] = {0: [], 1: []}

    async def alternate(url: str) -> None:
        for r in range(rounds):
            for acks in (0, 1) if r % 2 == 0 else (1, 0):  # alternate the order
                legs[acks].append(await _leg(url, acks, count, batches, cluster))

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        if cluster:
            nodes = LocalCluster(root / "cluster").start()
            try:
                await alternate(nodes.url)
            finally:
                nodes.stop()
        else:
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
                await alternate(primary.url)
            finally:
                replica.stop()
                primary.stop()
    result: dict[str, Any] = {
        "redis": "cluster of 3 primaries + 3 replicas" if cluster else "primary + 1 replica",
        "rounds": rounds,
        "single_events": count,
        "batches_of_100": batches,
    }
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
    parser.add_argument("--cluster", action="store_true", help="on a six-node Redis Cluster")
    args = parser.parse_args()
    result = asyncio.run(main(args.rounds, args.events, args.batches, args.cluster))
    for name in ("no_wait", "wait_1"):
        print(name, result[name])
    print(json.dumps(result))


if __name__ == "__main__":
    cli()
