"""Telemetry benchmark: the gateway and one trading instance with telemetry on vs off.

    make bench-telemetry               # .venv/bin/python -m bench.telemetry
    python -m bench.telemetry --rounds 5 --seconds 8 --connections 32
    python -m bench.telemetry --experiment lean_span,log_format_once

One private redis-server, one `python -m services.trading` and the gateway
(`python -m gateway`), both started by bench.gateway's helpers, on 127.0.0.1;
wrk drives `GET /api/v1/trading/markets` through the gateway with a bearer token
(verified by the gateway and by the service). Both processes are restarted for
every leg with the leg's telemetry settings, the same for both:

- on:       tracing at sample ratio 1.0 (the local default) exported as JSON lines
            under <run_dir>/traces (what the local stack does), JSON logs at INFO
            (one access line per request and process, to stderr and <run_dir>/log);
- on_10pct: the same at sample ratio 0.1;
- off:      ASTRA_TELEMETRY__TRACING=false and logs at WARNING (no access lines).
            RED metrics stay on: TelemetryMiddleware has no switch for them;
- tracing_only / logs_only: the breakdown (tracing at 1.0 with logs at WARNING;
            logs at INFO with tracing off).

Legs alternate within each round (the order rotates from round to round); a ratio
is the median of the per-round ratios, a rate the median of the rounds. Each leg
also reports the CPU time per request of the gateway and of trading (utime+stime
from /proc during the measured wrk run), which moves less than wall rates on a
shared machine. `--experiment` applies in-process patches of the kernel to both
processes (bench/_telemetry_patches.py) to measure a change before it is made.
Targets are printed beside the figures and never change them. The last line of
the output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import _gateway_procs
from bench._gateway_procs import ROOT, Proc, start_gateway, start_trading
from bench._gateway_wrk import WrkResult, wrk
from bench._telemetry_micro import measure as measure_pieces
from bench._telemetry_patches import PATCHES, PATCHES_ENV
from stack.redis_server import RedisServer
from tests.support.tokens import TokenIssuer

PATH = "/api/v1/trading/markets"
TARGETS = {  # from the issue; a missed target is reported, never lowered
    "telemetry_on_off_ratio": 0.6,  # at least, sampling 1.0
    "telemetry_on_off_ratio_10pct": 0.85,  # at least, sampling 0.1
}
_OFF = {"ASTRA_TELEMETRY__TRACING": "false"}
_INFO = {"ASTRA_TELEMETRY__LOG_LEVEL": "INFO"}
_WARNING = {"ASTRA_TELEMETRY__LOG_LEVEL": "WARNING"}
LEGS: dict[str, dict[str, str]] = {
    "off": {**_OFF, **_WARNING},
    "on": {"ASTRA_TELEMETRY__SAMPLE_RATIO": "1.0", **_INFO},
    "on_10pct": {"ASTRA_TELEMETRY__SAMPLE_RATIO": "0.1", **_INFO},
    "tracing_only": {"ASTRA_TELEMETRY__SAMPLE_RATIO": "1.0", **_WARNING},
    "logs_only": {**_OFF, **_INFO},
}
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.telemetry", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="per measured leg")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds, before each leg")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--legs", default=",".join(LEGS), help=f"comma-separated subset of {','.join(LEGS)}"
    )
    parser.add_argument(
        "--experiment",
        default="",
        help=f"comma-separated kernel patches for every leg: {', '.join(PATCHES)}",
    )
    return parser.parse_args()


def _say(*parts: object) -> None:
    print(*parts, flush=True)


# The gateway's Redis GCRA stores its "theoretical arrival time" rounded up to the
# millisecond (`math.ceil(new_tat)` in gateway/ratelimit.py), so one subject gains at
# least 1 ms per request whatever the rate: bench.gateway's burst of 1e6 (1 s of
# tolerance at 1e6/s) runs out after about a second above 1,000 req/s and the rest
# are 429s. A burst of 1e9 gives 1,000 s of tolerance, more than all legs together
# drift (the key lives in the shared redis across legs).
_UNLIMITED = {"ASTRA_RATE_LIMIT__DEFAULT__BURST": "1000000000"}


@contextlib.contextmanager
def _spawning(env: dict[str, str], patches: str) -> Iterator[None]:
    """bench.gateway's starters, with the leg's settings laid over theirs and, with
    patches, `python -m X` run as `python -m bench._telemetry_patches X`."""
    spawn = _gateway_procs._spawn
    extra = {**env, **_UNLIMITED, **({PATCHES_ENV: patches} if patches else {})}

    def patched(name: str, argv: list[str], env: dict[str, str], run_dir: Path, port: int) -> Proc:
        if patches and argv[1:2] == ["-m"]:
            argv = [argv[0], "-m", "bench._telemetry_patches", *argv[2:]]
        return spawn(name, argv, {**env, **extra}, run_dir, port)

    _gateway_procs._spawn = patched
    try:
        yield
    finally:
        _gateway_procs._spawn = spawn


def _cpu_seconds(proc: Proc) -> float:
    fields = Path(f"/proc/{proc.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime


@dataclass(frozen=True)
class Leg:
    result: WrkResult
    gateway_cpu_us: float  # per request
    trading_cpu_us: float

    @property
    def cpu_us(self) -> float:
        return self.gateway_cpu_us + self.trading_cpu_us

    def row(self) -> dict[str, Any]:
        return {
            **self.result.row(),
            "gateway_cpu_us_per_request": round(self.gateway_cpu_us, 1),
            "trading_cpu_us_per_request": round(self.trading_cpu_us, 1),
        }


async def _leg(
    name: str, args: argparse.Namespace, run_dir: Path, redis_url: str, jwks_url: str,
    headers: dict[str, str],
) -> Leg:  # fmt: skip
    leg_dir = run_dir / name
    leg_dir.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    try:
        with _spawning(LEGS[name], args.experiment):
            trading = await start_trading(leg_dir, redis_url, jwks_url)
            procs.append(trading)
            gateway = await start_gateway(leg_dir, redis_url, jwks_url)
            procs.append(gateway)
        url = gateway.url + PATH
        async with httpx.AsyncClient(timeout=5) as http:
            answer = await http.get(url, headers=headers)
            if answer.status_code != 200:
                raise RuntimeError(f"{name}: {answer.status_code} {answer.text[:300]}")
        load = {"connections": args.connections, "headers": headers}
        await wrk(url, threads=1, seconds=args.warmup, **load)
        cpu = [_cpu_seconds(gateway), _cpu_seconds(trading)]
        result = await wrk(url, threads=args.threads, seconds=args.seconds, **load)
        gateway_cpu = _cpu_seconds(gateway) - cpu[0]
        trading_cpu = _cpu_seconds(trading) - cpu[1]
    finally:
        for proc in reversed(procs):
            proc.stop()
    served = max(result.requests, 1)
    return Leg(result, gateway_cpu / served * 1e6, trading_cpu / served * 1e6)


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    names = [n for n in args.legs.split(",") if n]
    unknown = [n for n in names if n not in LEGS] + [
        p for p in args.experiment.split(",") if p and p not in PATCHES
    ]
    if unknown or "off" not in names:
        raise SystemExit(f"unknown legs/patches {unknown}, or no 'off' leg in {names}")
    cores = os.cpu_count() or 1
    _say(f"machine: {platform.machine()}, {cores} cores shared by wrk, redis, trading, gateway")
    load = f"wrk -t{args.threads} -c{args.connections} -d{args.seconds:g}s"
    _say(f"{load} after a {args.warmup:g}s warm-up, each leg on freshly started processes")
    _say(
        f"legs {names}, {args.rounds} rounds, order rotating; experiment: {args.experiment or '-'}"
    )
    rounds: list[dict[str, Leg]] = []
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as tmp:
        run_dir = Path(tmp)
        redis = RedisServer(run_dir / "redis").start()
        try:
            async with TokenIssuer() as issuer:
                headers = {"Authorization": f"Bearer {issuer.token('bench-user', 'bench')}"}
                for index in range(args.rounds):
                    order = names[index % len(names) :] + names[: index % len(names)]
                    legs: dict[str, Leg] = {}
                    for name in order:
                        legs[name] = await _leg(
                            name, args, run_dir / f"r{index}", redis.url, issuer.jwks_url, headers
                        )
                        _say(f"round {index + 1} {name:>12}: {legs[name].row()}")
                    rounds.append(legs)
        finally:
            redis.stop()
        pieces = await measure_pieces(run_dir / "micro") if not args.experiment else {}
        for piece, micros in pieces.items():
            _say(f"in-process {piece}: {micros} µs/request")

    def rps(name: str) -> float:
        return _median([r[name].result.rps for r in rounds])

    def ratio(name: str) -> float | None:
        if name not in names:
            return None
        return round(_median([r[name].result.rps / r["off"].result.rps for r in rounds]), 3)

    def cpu_ratio(name: str) -> float | None:
        """Off/on CPU per request of both processes: the ratio two cores running only
        these processes would reach, less sensitive to other work on the machine."""
        if name not in names:
            return None
        return round(_median([r["off"].cpu_us / r[name].cpu_us for r in rounds]), 3)

    def cpu(name: str, part: str) -> float:
        return round(_median([getattr(r[name], f"{part}_cpu_us") for r in rounds]), 1)

    summary: dict[str, Any] = {
        "bench": "telemetry",
        "telemetry_on_off_ratio": ratio("on"),
        "telemetry_on_off_ratio_10pct": ratio("on_10pct"),
        "rps_on": round(rps("on"), 1) if "on" in names else None,
        "rps_off": round(rps("off"), 1),
        "rps_on_10pct": round(rps("on_10pct"), 1) if "on_10pct" in names else None,
        "ratio_tracing_only": ratio("tracing_only"),
        "ratio_logs_only": ratio("logs_only"),
        "cpu_ratio_on": cpu_ratio("on"),
        "cpu_ratio_on_10pct": cpu_ratio("on_10pct"),
        "cpu_ratio_tracing_only": cpu_ratio("tracing_only"),
        "cpu_ratio_logs_only": cpu_ratio("logs_only"),
        "cpu_us_per_request": {
            name: {"gateway": cpu(name, "gateway"), "trading": cpu(name, "trading")}
            for name in names
        },
        "middleware_cpu_us_per_request": pieces or None,
        "p50_ms": {n: round(_median([r[n].result.p50_ms for r in rounds]), 2) for n in names},
        "p99_ms": {n: round(_median([r[n].result.p99_ms for r in rounds]), 2) for n in names},
        "experiment": args.experiment or None,
        "path": f"GET {PATH} via the gateway (bearer token)",
        "load": {"threads": args.threads, "connections": args.connections,
                 "seconds": args.seconds, "warmup": args.warmup, "rounds": args.rounds},
        "off_means": "tracing off, logs at WARNING; RED metrics still on (no switch)",
        "cores": cores,
        "loadavg_end": round(os.getloadavg()[0], 2),
        "targets": TARGETS,
    }  # fmt: skip
    errors = sum(
        leg.result.non_2xx + leg.result.socket_errors for r in rounds for leg in r.values()
    )
    summary["errors"] = errors
    if errors:
        _say(f"! {errors} non-2xx responses or socket errors: the rates are not comparable")
    summary["targets_met"] = {
        key: summary[key] is not None and summary[key] >= target for key, target in TARGETS.items()
    }
    return summary


def main() -> None:
    subprocess.run([str(ROOT / "scripts" / "require.sh"), "wrk:wrk"], check=True)
    summary = asyncio.run(run(_args()))
    print(json.dumps(summary), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
