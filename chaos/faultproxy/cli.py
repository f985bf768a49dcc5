"""Run the fault proxy server until SIGINT or SIGTERM (`main` is what `astra` will call).

    python -m chaos.faultproxy                      # API on 127.0.0.1:8474
    python -m chaos.faultproxy -port 0 -seed 7 -config proxies.json
    curl -s localhost:8474/proxies -d '{"name":"redis","listen":"127.0.0.1:26379",
                                        "upstream":"127.0.0.1:6379"}'
    curl -s localhost:8474/proxies/redis/toxics -d '{"type":"latency","attributes":{"latency":100}}'

Flags follow toxiproxy-server (`-host`, `-port`, `-config`, `-seed`, `-version`); logs are
JSON lines on stderr (logger names under `chaos.faultproxy`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from chaos.faultproxy.config import FaultProxySettings, LoopName, parse_args
from chaos.faultproxy.server import VERSION, FaultProxyServer


def main(argv: Sequence[str] | None = None) -> int:
    settings, args = parse_args(argv)
    if args.version:
        print(f"faultproxy version {VERSION}")
        return 0
    setup_logging(settings)
    with asyncio.Runner(loop_factory=loop_factory(settings.loop)) as runner:
        runner.run(serve(settings))
    return 0


async def serve(settings: FaultProxySettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with FaultProxyServer(settings) as server:
        await stop.wait()
        server.logger.info("shutdown started")


def setup_logging(settings: FaultProxySettings) -> None:
    try:
        from backbone.telemetry.logs import setup_logging as setup_json_logging
    except ImportError:  # the shared telemetry package is optional for this tool
        logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr)
        return
    setup_json_logging(
        service="faultproxy",
        instance_id=f"faultproxy-{settings.port}",
        level=settings.log_level,
        log_dir=None,
    )


def loop_factory(name: LoopName) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop roughly halves the per-chunk cost of the data path; asyncio works too."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise
        return None
    return uvloop.new_event_loop
