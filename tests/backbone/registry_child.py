"""A registered instance in a process of its own, for crash tests (`kill -9` it).

    python tests/backbone/registry_child.py REDIS_URL SERVICE INSTANCE_ID HEARTBEAT TTL TOKEN

Prints "registered" once its first heartbeat landed, then beats until killed.
"""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as aioredis

from backbone.config import RegistrySettings
from backbone.registry import InstanceInfo, Registrar


async def main(url: str, service: str, instance_id: str, hb: str, ttl: str, token: str) -> None:
    settings = RegistrySettings(heartbeat_seconds=float(hb), ttl_seconds=float(ttl), token=token)
    info = InstanceInfo(
        service=service,
        instance_id=instance_id,
        url="http://127.0.0.1:9/",
        version="child",
        metadata={"pid": "child"},
        status="ready",
    )
    client = aioredis.Redis.from_url(url)
    registrar = Registrar(client, info, settings)
    await registrar.start()
    print("registered", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await registrar.aclose()
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
