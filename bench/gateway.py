"""Gateway benchmark: the gateway vs Debian's nginx vs no proxy, in front of one trading instance.

    make bench-gateway                 # .venv/bin/python -m bench.gateway
    python -m bench.gateway --seconds 20 --connections 128

One run on one machine: a private redis-server, one `python -m services.trading`,
the gateway (`python -m gateway`, every feature on) and nginx (generated config,
one worker, keep-alive upstream) all on 127.0.0.1, measured with wrk against
`GET /api/v1/trading/markets` with a valid bearer token (verified by the gateway
and again by the service, on every leg). Legs:

- throughput: wrk -t1 -c64 for --seconds against direct, nginx and the gateway;
- added latency: wrk -t1 -c1 (one request at a time), gateway minus direct;
- fallback: trading killed, the gateway's breaker open, wrk -c1 (and -c64)
  against the gateway, which answers 503 problems from memory.

Load generator and servers share the machine's cores, which the output states.
Targets are printed beside the figures and never change them. The last line of
the output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._gateway_procs import (
    OPERATOR_TOKEN,
    ROOT,
    Proc,
    start_gateway,
    start_nginx,
    start_trading,
)
from bench._gateway_wrk import WrkResult, wrk
from stack.redis_server import RedisServer
from tests.support.tokens import TokenIssuer

PATH = "/api/v1/trading/markets"
BREAKER_WINDOW_SECONDS = 10.0  # GatewaySettings.breaker.window_seconds, the default
TARGETS = {  # from the issue; a missed target is reported, never lowered
    "gateway_vs_nginx_ratio": 0.6,  # at least
    "fallback_p99_ms": 5.0,  # at most
}


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="per throughput leg")
    parser.add_argument("--latency-seconds", type=float, default=5.0, help="per -c1 leg")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds, before each target")
    return parser.parse_args()


def _say(*parts: object) -> None:
    print(*parts, flush=True)


async def _open_breaker(gateway: Proc, headers: dict[str, str], limit: float = 15.0) -> int:
    """Send requests until the gateway reports the trading breaker open; returns how many."""
    sent = 0
    deadline = time.monotonic() + limit
    async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as http:
        while time.monotonic() < deadline:
            await http.get(PATH, headers=headers)
            sent += 1
            if sent % 10 == 0:
                view = await http.get(
                    "/api/v1/services", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
                )
                if view.json()["services"]["trading"]["breaker"] == "open":
                    return sent
    raise RuntimeError(f"breaker not open after {sent} requests")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    load = {"threads": args.threads, "connections": args.connections, "seconds": args.seconds}
    _say(f"machine: {platform.machine()}, {cores} cores shared by wrk and every server")
    _say(f"wrk -t{args.threads} -c{args.connections} -d{args.seconds:g}s; latency legs -c1")
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        run_dir = Path(tmp)
        redis = RedisServer(run_dir / "redis").start()
        try:
            async with TokenIssuer() as issuer:
                headers = {"Authorization": f"Bearer {issuer.token('bench-user', 'bench')}"}
                trading = await start_trading(run_dir, redis.url, issuer.jwks_url)
                procs.append(trading)
                gateway = await start_gateway(run_dir, redis.url, issuer.jwks_url)
                procs.append(gateway)
                nginx = await start_nginx(run_dir, trading.port)
                procs.append(nginx)
                targets = {"direct": trading, "nginx": nginx, "gateway": gateway}
                async with httpx.AsyncClient(timeout=5) as http:
                    for name, proc in targets.items():  # every path answers 200 with the token
                        answer = await http.get(proc.url + PATH, headers=headers)
                        if answer.status_code != 200:
                            raise RuntimeError(f"{name}: {answer.status_code} {answer.text[:300]}")

                async def measure(proc: Proc, connections: int, seconds: float) -> WrkResult:
                    url = proc.url + PATH
                    await wrk(
                        url, threads=1, connections=connections, seconds=args.warmup,
                        headers=headers,
                    )  # fmt: skip
                    return await wrk(
                        url, threads=args.threads, connections=connections, seconds=seconds,
                        headers=headers,
                    )  # fmt: skip

                throughput: dict[str, WrkResult] = {}
                for name, proc in targets.items():
                    throughput[name] = await measure(proc, args.connections, args.seconds)
                    _say(f"{name:>8} -c{args.connections}: {throughput[name].row()}")
                latency: dict[str, WrkResult] = {}
                for name in ("direct", "gateway"):
                    latency[name] = await measure(targets[name], 1, args.latency_seconds)
                    _say(f"{name:>8} -c1: {latency[name].row()}")

                # The breaker's window (10 s) still holds the healthy legs' successes; let it
                # forget them, so the failures of a killed instance decide as in an outage.
                await asyncio.sleep(BREAKER_WINDOW_SECONDS + 0.5)
                trading.stop(signal.SIGKILL)
                opened_after = await _open_breaker(gateway, headers)
                _say(f"breaker open after {opened_after} requests to a killed instance")
                fallback_c1 = await measure(gateway, 1, args.latency_seconds)
                _say(f"fallback -c1: {fallback_c1.row()}")
                fallback_load = await measure(gateway, args.connections, args.latency_seconds)
                _say(f"fallback -c{args.connections}: {fallback_load.row()}")
        finally:
            for proc in reversed(procs):
                proc.stop()
            redis.stop()
    for name, result in throughput.items():
        if result.non_2xx or result.socket_errors:
            _say(f"! {name}: {result.non_2xx} non-2xx, {result.socket_errors} socket errors")
    summary: dict[str, Any] = {
        "bench": "gateway",
        "path": f"GET {PATH} (bearer token)",
        "load": load,
        "cores": cores,
        "gateway_rps": round(throughput["gateway"].rps, 1),
        "nginx_rps": round(throughput["nginx"].rps, 1),
        "direct_rps": round(throughput["direct"].rps, 1),
        "gateway_vs_nginx_ratio": round(throughput["gateway"].rps / throughput["nginx"].rps, 3),
        "gateway_vs_direct_ratio": round(throughput["gateway"].rps / throughput["direct"].rps, 3),
        "added_p50_ms": round(latency["gateway"].p50_ms - latency["direct"].p50_ms, 3),
        "added_p99_ms": round(latency["gateway"].p99_ms - latency["direct"].p99_ms, 3),
        "added_p50_ms_loaded": round(throughput["gateway"].p50_ms - throughput["direct"].p50_ms, 3),
        "added_p99_ms_loaded": round(throughput["gateway"].p99_ms - throughput["direct"].p99_ms, 3),
        "fallback_p99_ms": round(fallback_c1.p99_ms, 3),
        "fallback_p99_ms_loaded": round(fallback_load.p99_ms, 3),
        "fallback_rps_loaded": round(fallback_load.rps, 1),
        "legs": {
            **{f"{k}_c{args.connections}": v.row() for k, v in throughput.items()},
            **{f"{k}_c1": v.row() for k, v in latency.items()},
            "fallback_c1": fallback_c1.row(),
            f"fallback_c{args.connections}": fallback_load.row(),
        },
        "targets": TARGETS,
    }
    met_ratio = summary["gateway_vs_nginx_ratio"] >= TARGETS["gateway_vs_nginx_ratio"]
    met_fallback = summary["fallback_p99_ms"] <= TARGETS["fallback_p99_ms"]
    summary["targets_met"] = {"gateway_vs_nginx_ratio": met_ratio, "fallback_p99_ms": met_fallback}
    return summary


def main() -> None:
    subprocess.run([str(ROOT / "scripts" / "require.sh"), "wrk:wrk", "nginx:nginx"], check=True)
    summary = asyncio.run(run(_args()))
    print(json.dumps(summary), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
