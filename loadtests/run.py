"""`python -m loadtests run`: one bounded, headless load run and its verdict.

    prepare the pool -> locust --headless (master + workers when --workers) -> wait one
    scrape -> gate (client view, server view) -> var/load/<run-id>/ -> exit code

`--up` starts a stack of its own first (`astra up` on a free port offset, with the
rate limits raised for load, stopped after); without it the run goes to `--host`
(default the local `make up` stack). Hosts that are not loopback are refused unless
`--allow-remote`; users, rate and time are bounded, and Locust is stopped if it
overruns its time.
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from loadtests import gate, pool, report
from loadtests.shapes import SHAPES
from stack.config import GATEWAY_PORT, MONITORING_PORTS
from stack.slo.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
MAX_USERS, MAX_RATE, MAX_SECONDS, MAX_WORKERS = 500, 2000.0, 3600.0, 8
SETTLE_SECONDS = 6.0  # one Prometheus scrape (monitoring/prometheus.yml: 5 s) and a bit

# What a load run raises, so the limits do not decide the run (429s still count apart).
LOAD_LIMITS = {
    "ASTRA_RATE_LIMIT__AUTH__RATE": "100",
    "ASTRA_RATE_LIMIT__AUTH__BURST": "200",
    "ASTRA_RATE_LIMIT__ORDERS__RATE": "500",
    "ASTRA_RATE_LIMIT__ORDERS__BURST": "1000",
    "ASTRA_RATE_LIMIT__DEFAULT__RATE": "2000",
    "ASTRA_RATE_LIMIT__DEFAULT__BURST": "4000",
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m loadtests", description=__doc__.split("\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="one headless run, judged by alerts/slos.yaml")
    run.add_argument("--shape", choices=sorted(SHAPES), default="steady")
    run.add_argument("--users", type=int, default=10)
    run.add_argument("--rate", type=float, default=20.0, help="user tasks per second, in all")
    run.add_argument("--seconds", type=float, default=60.0)
    run.add_argument("--host", default=None, help="the gateway (default: the local stack)")
    run.add_argument("--up", action="store_true", help="start a stack of its own for the run")
    run.add_argument("--workers", type=int, default=0, help="local Locust worker processes")
    run.add_argument("--expect-remote-workers", type=int, default=0)
    run.add_argument("--allow-remote", action="store_true")
    run.add_argument(
        "--pool",
        type=int,
        default=0,
        help="accounts prepared (default: users, at most 30; traders share them round robin)",
    )
    run.add_argument("--prometheus", default=None, help="default: the stack's, when running")
    run.add_argument("--stack-dir", type=Path, default=None, help="the stack's run dir (var)")
    run.add_argument("--slos", type=Path, default=ROOT / "alerts" / "slos.yaml")
    run.add_argument("--out", type=Path, default=ROOT / "var" / "load")
    run.add_argument("--run-id", default=None)
    run.add_argument("--tolerance", type=float, default=gate.DEFAULT_TOLERANCE)
    run.add_argument("--drill", action="store_true", help="with --up: `astra up --drill`")
    run.add_argument("--quiet", action="store_true", help="fail too if any alert fired")
    cap = sub.add_parser(
        "capacity",
        parents=[run],
        add_help=False,
        conflict_handler="resolve",
        help="raise the rate step by step until the gate fails",
    )
    cap.add_argument("--max-rate", type=float, default=320.0)
    cap.add_argument("--factor", type=float, default=2.0)
    return top


def _loopback(host: str) -> bool:
    name = urlsplit(host).hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check(args: argparse.Namespace) -> str | None:
    """Why the arguments are refused, or None."""
    if not 1 <= args.users <= MAX_USERS:
        return f"--users must be 1..{MAX_USERS}"
    if not 0 < args.rate <= MAX_RATE:
        return f"--rate must be in (0, {MAX_RATE:g}]"
    if not 5 <= args.seconds <= MAX_SECONDS:
        return f"--seconds must be 5..{MAX_SECONDS:g}"
    if not 0 <= args.workers <= MAX_WORKERS:
        return f"--workers must be 0..{MAX_WORKERS}"
    if args.host and not _loopback(args.host) and not args.allow_remote:
        return f"{args.host} is not a loopback address; pass --allow-remote if you mean it"
    return None


def _free_offset() -> int:
    ports = [6390, *range(8000, 8010), *range(8100, 8200), *MONITORING_PORTS.values()]
    for _ in range(50):
        offset = random.randrange(10_000, 23_000, 100)
        if all(_port_free(p + offset) for p in ports):
            return offset
    raise RuntimeError("no free port range for a stack")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def own_stack(
    run_dir: Path, env: Mapping[str, str] = {}, drill: bool = False
) -> Iterator[dict[str, Any]]:
    """`astra up` with load limits on a free port offset; its stack.json while it runs."""
    stack_dir = run_dir / "stack"
    full_env = {
        **os.environ,
        "ASTRA_RUN_DIR": str(stack_dir),
        "ASTRA_PORT_OFFSET": str(_free_offset()),
        **LOAD_LIMITS,
        **env,
    }
    with (run_dir / "astra-up.log").open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our interpreter, our CLI
            [sys.executable, "-m", "stack.cli", "up", *(["--drill"] if drill else [])],
            env=full_env,
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 90
        while not (stack_dir / "stack.json").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"astra up did not start; see {run_dir / 'astra-up.log'}")
            time.sleep(0.25)
        yield json.loads((stack_dir / "stack.json").read_text())
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def _child_url(info: Mapping[str, Any], name: str) -> str | None:
    for child in info.get("children", []):
        if child["name"] == name:
            return str(child["url"])
    return None


def locust_commands(args: argparse.Namespace, host: str, run_dir: Path) -> list[list[str]]:
    """The master's (or the only) command first, then one per local worker."""
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--loglevel", "WARNING"]
    main = [
        *base,
        "--headless",
        "--host",
        host,
        "--csv",
        str(run_dir / "locust"),
        "--csv-full-history",
        "--only-summary",
        "--exit-code-on-error",
        "0",
    ]
    workers = args.workers + args.expect_remote_workers
    if not workers:
        return [main]
    # Workers on other hosts: the same locustfile and ASTRA_LOAD_* environment, then
    # `locust -f loadtests/locustfile.py --worker --master-host <this host>`.
    bind = "0.0.0.0" if args.expect_remote_workers else "127.0.0.1"
    main += ["--master", "--master-bind-host", bind, "--expect-workers", str(workers)]
    worker = [*base, "--worker", "--master-host", "127.0.0.1"]
    return [main, *([worker] * args.workers)]


def drive(args: argparse.Namespace, host: str, run_dir: Path, env: Mapping[str, str]) -> None:
    commands = locust_commands(args, host, run_dir)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    log = (run_dir / "locust.log").open("ab")
    processes = [  # our own interpreter running Locust on our own locustfile
        subprocess.Popen(cmd, env=full_env, stdout=log, stderr=log, cwd=ROOT)  # noqa: S603
        for cmd in commands
    ]
    try:
        processes[0].wait(timeout=args.seconds + 60)  # the shape ends it; this bounds it
    except subprocess.TimeoutExpired:
        processes[0].send_signal(signal.SIGINT)
        processes[0].wait(timeout=15)
    finally:
        for process in processes[1:]:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        for process in processes:
            if process.poll() is None:
                process.kill()
        log.close()


def execute(args: argparse.Namespace, info: Mapping[str, Any] | None) -> int:
    run_id = args.run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir: Path = args.out / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    offset = int(os.environ.get("ASTRA_PORT_OFFSET", "0"))
    host = args.host or (info and _child_url(info, "gateway-1"))
    host = host or f"http://127.0.0.1:{GATEWAY_PORT + offset}"
    prom_url = args.prometheus or (info and _child_url(info, "prometheus"))
    prom_url = prom_url or f"http://127.0.0.1:{MONITORING_PORTS['prometheus'] + offset}"
    default_dir = os.environ.get("ASTRA_RUN_DIR", str(ROOT / "var"))  # as `make up` has it
    stack_dir = args.stack_dir or Path(
        info["run_dir"] if info and "run_dir" in info else default_dir
    )
    spec = load_spec(args.slos)

    print(
        f"load run {run_id}: {args.shape}, {args.users} users, {args.rate:g} tasks/s, "
        f"{args.seconds:g} s against {host}"
    )
    try:
        accounts = pool.prepare(host, args.pool or min(args.users, 30), run_id)
    except (pool.PoolError, httpx.HTTPError) as e:
        print(f"cannot prepare the account pool at {host} ({e}): is the stack running?")
        return 2
    pool_file = run_dir / "pool.json"
    pool_file.write_text(json.dumps(accounts))
    pool_file.chmod(0o600)
    out = run_dir / "locust_stats.json"
    env = {
        "ASTRA_LOAD_RUN_ID": run_id,
        "ASTRA_LOAD_SHAPE": args.shape,
        "ASTRA_LOAD_USERS": str(args.users),
        "ASTRA_LOAD_RATE": str(args.rate),
        "ASTRA_LOAD_SECONDS": str(args.seconds),
        "ASTRA_LOAD_POOL": str(pool_file),
        "ASTRA_LOAD_OUT": str(out),
    }
    if args.expect_remote_workers:
        exports = " ".join(f"{k}={v}" for k, v in env.items() if k != "ASTRA_LOAD_OUT")
        print(
            f"waiting for {args.expect_remote_workers} remote worker(s); on each host, with "
            f"{pool_file} copied to the same path:\n  {exports} PYTHONPATH=. locust -f "
            f"loadtests/locustfile.py --worker --master-host {socket.gethostname()}"
        )
    prometheus = gate.Prometheus(prom_url)
    if prometheus.reachable():
        time.sleep(SETTLE_SECONDS)  # one scrape, so the window opens on existing series
    started = time.time()
    drive(args, host, run_dir, env)
    ended = time.time()
    if not out.exists():
        print(f"locust wrote no statistics; see {run_dir / 'locust.log'}")
        return 2
    doc = json.loads(out.read_text())
    started = float(doc.get("start_time") or started)
    time.sleep(SETTLE_SECONDS)  # so the last scrape of the run is in Prometheus
    server = gate.server_view(spec, prometheus, started, ended + SETTLE_SECONDS)
    verdict = gate.judge(spec, gate.client_view(doc), server, args.tolerance)
    summary = {
        "run_id": run_id,
        "shape": args.shape,
        "users": args.users,
        "rate": args.rate,
        "seconds": args.seconds,
        "host": host,
        "prometheus": prom_url,
        "window": {"start": started, "end": ended + SETTLE_SECONDS},
        "thresholds": {
            slo.slo_class: slo.threshold_seconds
            for slo in spec.slos
            if slo.kind == "latency" and slo.slo_class
        },
        **verdict.to_json(),
    }
    alerts = stack_dir / "alerts.jsonl"
    fired = sorted(
        {p[2] for p in report.alert_periods(alerts, started, ended + SETTLE_SECONDS)}
        | set(gate.fired_alerts(prometheus, started, ended + SETTLE_SECONDS))
    )
    summary["alerts_fired"] = fired
    quiet_failed = bool(args.quiet and fired)
    summary["passed"] = verdict.passed and not quiet_failed
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    report.write(run_dir, doc, summary, alerts if alerts.exists() else None)
    print(verdict.table())
    if args.quiet:
        print(
            f"alerts fired during the run: {', '.join(fired) or 'none'}"
            + (" -- not quiet under this load: FAIL" if quiet_failed else " (quiet)")
        )
    print(f"\n{run_dir}/report.html")
    return 0 if summary["passed"] else 1


def capacity(args: argparse.Namespace, info: Mapping[str, Any] | None) -> int:
    """Runs at rate, rate x factor, ... until the gate fails (or --max-rate): the last
    rate that passed is the capacity at these objectives."""
    base = args.run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    steps: list[dict[str, Any]] = []
    rate = args.rate
    while rate <= min(args.max_rate, MAX_RATE):
        step = argparse.Namespace(**vars(args))
        step.rate, step.run_id = rate, f"{base}-rate{rate:g}"
        step.users = min(MAX_USERS, max(args.users, math.ceil(rate / 2)))
        code = execute(step, info)
        summary = json.loads((args.out / step.run_id / "summary.json").read_text())
        missed = [s["slo"] for s in summary["slos"] if s["missed"]]
        requests = sum(c["requests"] for c in summary["classes"].values())
        steps.append(
            {
                "rate": rate,
                "users": step.users,
                "passed": code == 0,
                "requests_per_s": requests / args.seconds,
                "missed": missed,
            }
        )
        if code != 0:
            break
        rate *= args.factor
    passed = [s for s in steps if s["passed"]]
    print("\ncapacity search (tasks/s -> verdict)")
    for s in steps:
        verdict = "pass" if s["passed"] else f"FAIL ({', '.join(s['missed']) or 'no stats'})"
        print(
            f"  {s['rate']:>8g} tasks/s  {s['users']:>4} users  "
            f"{s['requests_per_s']:>8.1f} req/s  {verdict}"
        )
    best = passed[-1] if passed else None
    print(
        f"capacity: {best['rate']:g} tasks/s ({best['requests_per_s']:.1f} req/s)"
        if best
        else "capacity: not even the first step passed"
    )
    (args.out / f"{base}-capacity.json").write_text(json.dumps(steps, indent=2))
    return 0 if best else 1


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # progress shows when piped to a file
    problem = check(args)
    if problem:
        print(f"refused: {problem}", file=sys.stderr)
        return 2
    action = capacity if args.command == "capacity" else execute
    if not args.up:
        return action(args, None)
    run_id = args.run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.run_id = run_id
    (args.out / run_id).mkdir(parents=True, exist_ok=True)
    with own_stack(args.out / run_id, drill=args.drill) as info:
        info = {**info, "run_dir": str(args.out / run_id / "stack")}
        return action(args, info)
