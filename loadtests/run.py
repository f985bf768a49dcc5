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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from loadtests import ceiling, cpu, gate, pool, report
from loadtests.shapes import SHAPES
from stack.config import GATEWAY_PORT, MONITORING_PORTS
from stack.slo.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
MIX_LOCUSTFILES = {"orders": Path(__file__).with_name("orders_locustfile.py")}
MAX_USERS, MAX_RATE, MAX_SECONDS, MAX_WORKERS = 500, 2000.0, 3600.0, 8
# Which persona classes a run starts (Locust's positional user classes; weights apply).
MIXES = {
    "default": ("Trader", "Browser", "Newcomer"),
    "traders": ("Trader",),
    "orders": ("Placer",),
}
ORDERS = "POST /api/v1/trading/orders"
SETTLE_SECONDS = 6.0  # one Prometheus scrape (monitoring/prometheus.yml: 5 s) and a bit

# What a load run raises, so the limits do not decide the run (429s still count apart),
# nor the traders' cash: 10,000 buys ~50 shares, and a drill's probe account also
# trades for the load (found: a drill's after-probes refused 422 "Insufficient funds").
LOAD_LIMITS = {
    "ASTRA_STARTING_CASH": "100000000.00",
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
    run.add_argument(
        "--mix",
        choices=sorted(MIXES),
        default="default",
        help="default: traders, browsers and newcomers by weight; traders: traders only; "
        "orders: traders who only place orders",
    )
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
    cap.add_argument("--refine", type=int, default=2, help="bisections after the first miss")
    cap.add_argument(
        "--no-ceiling",
        dest="ceiling",
        action="store_false",
        help="skip Locust's own ceiling against a trivial upstream (nginx)",
    )
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


def _free_offset(chaos: bool = False) -> int:
    ports = [6390, *range(8000, 8010), *range(8100, 8200), *MONITORING_PORTS.values()]
    if chaos:  # the fault proxy's API and proxies (stack/chaos.py): 8474, 16000+, 18100+
        ports += [8474, *range(16000, 16010), *range(16100, 16200), *range(18100, 18200)]
    # Below the ephemeral range (32768+), where outgoing connections take their ports.
    top = 32_768 - max(ports)
    for _ in range(50):
        offset = random.randrange(10_000 if top > 10_000 else 1_000, min(23_000, top), 100)
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
    run_dir.mkdir(parents=True, exist_ok=True)
    chaos = {**os.environ, **env}.get("ASTRA_CHAOS", "").lower() in ("1", "true", "yes")
    full_env = {
        **os.environ,
        "ASTRA_RUN_DIR": str(stack_dir),
        "ASTRA_PORT_OFFSET": str(_free_offset(chaos)),
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
    locustfile = MIX_LOCUSTFILES.get(args.mix, LOCUSTFILE)
    base = [sys.executable, "-m", "locust", "-f", str(locustfile), "--loglevel", "WARNING"]
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
    classes = list(MIXES[args.mix])
    main += classes
    workers = args.workers + args.expect_remote_workers
    if not workers:
        return [main]
    # Workers on other hosts: the same locustfile and ASTRA_LOAD_* environment, then
    # `locust -f loadtests/locustfile.py --worker --master-host <this host>`.
    bind = "0.0.0.0" if args.expect_remote_workers else "127.0.0.1"
    main += ["--master", "--master-bind-host", bind, "--expect-workers", str(workers)]
    worker = [*base, "--worker", "--master-host", "127.0.0.1", *classes]
    return [main, *([worker] * args.workers)]


def stack_pids(stack_dir: Path) -> dict[str, int]:
    """The stack's processes by name (its stack.json), to time their CPU; {} without one."""
    try:
        state = json.loads((stack_dir / "stack.json").read_text())
    except (OSError, ValueError):
        return {}
    pids = {str(c["name"]): int(c["pid"]) for c in state.get("children", []) if c.get("pid")}
    if state.get("pid"):
        pids["astra up"] = int(state["pid"])
    return pids


def drive(
    args: argparse.Namespace,
    host: str,
    run_dir: Path,
    env: Mapping[str, str],
    measured: Mapping[str, int] = {},
) -> tuple[dict[str, float], float]:
    """Runs Locust to the end of its shape; the CPU seconds it and the `measured`
    processes used meanwhile (cpu.Sampler), and the wall seconds they were sampled over."""
    commands = locust_commands(args, host, run_dir)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    log = (run_dir / "locust.log").open("ab")
    processes = [  # our own interpreter running Locust on our own locustfile
        subprocess.Popen(cmd, env=full_env, stdout=log, stderr=log, cwd=ROOT)  # noqa: S603
        for cmd in commands
    ]
    locusts = {f"locust-worker-{n}" if n else "locust": p.pid for n, p in enumerate(processes)}
    sampler = cpu.Sampler({**measured, **locusts})
    try:
        with sampler:
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
    return sampler.used()


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
    used, sampled = drive(args, host, run_dir, env, stack_pids(stack_dir))
    ended = time.time()
    if not out.exists():
        print(f"locust wrote no statistics; see {run_dir / 'locust.log'}")
        return 2
    doc = json.loads(out.read_text())
    started = float(doc.get("start_time") or started)
    time.sleep(SETTLE_SECONDS)  # so the last scrape of the run is in Prometheus
    server = gate.server_view(spec, prometheus, started, ended + SETTLE_SECONDS)
    verdict = gate.judge(spec, gate.client_view(doc), server, args.tolerance)
    seconds = max(1.0, ended - started)
    routes = {f"{e['method']} {e['name']}": int(e["num_requests"]) for e in doc["entries"]}
    summary = {
        "run_id": run_id,
        "mix": args.mix,
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
        "requests_per_s": round(sum(routes.values()) / seconds, 1),
        "orders_per_s": round(routes.get(ORDERS, 0) / seconds, 1),
        "routes": routes,
        "server_p99": gate.server_quantiles(prometheus, started, ended + SETTLE_SECONDS),
        "cpu": {
            "sampled_seconds": round(sampled, 1),
            "cores": {n: round(v / sampled, 3) for n, v in used.items()} if sampled else {},
        },
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


def _step(
    args: argparse.Namespace, info: Mapping[str, Any] | None, base: str, rate: float
) -> dict[str, Any]:
    """One capacity step: a run at `rate` (users grow with it), reduced to what the
    search and bench/README.md need."""
    step = argparse.Namespace(**vars(args))
    step.rate, step.run_id = rate, f"{base}-rate{rate:g}"
    step.users = min(MAX_USERS, max(args.users, math.ceil(rate / 2)))
    code = execute(step, info)
    summary = json.loads((args.out / step.run_id / "summary.json").read_text())
    cores = summary["cpu"]["cores"]
    return {
        "rate": rate,
        "users": step.users,
        "passed": code == 0,
        "missed": [s["slo"] for s in summary["slos"] if s["missed"]],
        "requests_per_s": summary["requests_per_s"],
        "orders_per_s": summary["orders_per_s"],
        "client_p99_ms": {c: v["p99_ms"] for c, v in summary["classes"].items()},
        "server_p99": summary["server_p99"],
        "cores": cores,
        "locust_cores": round(sum(v for n, v in cores.items() if n.startswith("locust")), 3),
        "stack_cores": round(
            sum(v for n, v in cores.items() if not n.startswith("locust") and n != cpu.MACHINE),
            3,
        ),
        "run_id": step.run_id,
    }


def search(
    step: Callable[[float], dict[str, Any]],
    rate: float,
    max_rate: float,
    factor: float = 2.0,
    refine: int = 2,
) -> list[dict[str, Any]]:
    """Steps at rate, rate x factor, ... until one fails (its "passed" is false) or
    max_rate, then up to `refine` bisections between the highest pass and the lowest
    fail (stopping when they are within 10 %); the steps by rate."""
    steps: list[dict[str, Any]] = []
    while rate <= max_rate:
        steps.append(step(rate))
        if not steps[-1]["passed"]:
            break
        rate *= factor
    for _ in range(refine):
        passed = [s["rate"] for s in steps if s["passed"]]
        failed = [s["rate"] for s in steps if not s["passed"]]
        if not passed or not failed:
            break
        low, high = max(passed), min(failed)
        if high - low < max(1.0, 0.1 * low):
            break
        steps.append(step(round((low + high) / 2, 1)))
    return sorted(steps, key=lambda s: float(s["rate"]))


def capacity(args: argparse.Namespace, info: Mapping[str, Any] | None) -> int:
    """The knee: runs at rate, rate x factor, ... until the gate fails (or --max-rate),
    then `--refine` bisections between the last rate that passed and the first that
    failed. The highest passing rate is the capacity at these objectives; each step
    records the CPU per process, so the report says which process saturated first.
    Then Locust's own ceiling against a trivial upstream (`loadtests.ceiling`)."""
    base = args.run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    steps = search(
        lambda rate: _step(args, info, base, rate),
        args.rate,
        min(args.max_rate, MAX_RATE),
        args.factor,
        args.refine,
    )
    result: dict[str, Any] = {"mix": args.mix, "step_seconds": args.seconds, "steps": steps}
    if args.ceiling:
        try:
            with ceiling.trivial_upstream(args.out / base) as url:
                result["locust_ceiling"] = ceiling.measure(
                    url, args.out / base, users=max(s["users"] for s in steps), workers=args.workers
                )
        except ceiling.CeilingError as e:
            result["locust_ceiling"] = {"error": str(e)}
    passing = [s for s in steps if s["passed"]]
    knee = passing[-1] if passing else None
    result["knee"] = knee
    (args.out / f"{base}-capacity.json").write_text(json.dumps(result, indent=2))
    print(capacity_table(result))
    print(f"\n{args.out / (base + '-capacity.json')}")
    return 0 if knee else 1


def capacity_table(result: Mapping[str, Any]) -> str:
    """The search, a line per step, then the knee and Locust's ceiling."""
    lines = [f"\ncapacity search, mix {result['mix']} ({result['step_seconds']:g} s a step)"]
    lines.append(
        f"  {'tasks/s':>8} {'users':>5} {'req/s':>7} {'orders/s':>8}  "
        f"{'locust':>6} {'stack':>6} {'machine':>7}  busiest (cores)           verdict"
    )
    for s in result["steps"]:
        verdict = "pass" if s["passed"] else f"FAIL ({', '.join(s['missed']) or 'no stats'})"
        machine = s["cores"].get(cpu.MACHINE, 0.0)
        busiest = ", ".join(cpu.busiest(s["cores"], 1.0, top=2))
        lines.append(
            f"  {s['rate']:>8g} {s['users']:>5} {s['requests_per_s']:>7.1f} "
            f"{s['orders_per_s']:>8.1f}  {s['locust_cores']:>6.2f} {s['stack_cores']:>6.2f} "
            f"{machine:>7.2f}  {busiest:<25} {verdict}"
        )
    knee = result.get("knee")
    if knee:
        p99 = ", ".join(f"{c} {v:g} ms" for c, v in sorted(knee["client_p99_ms"].items()) if v)
        server = knee["server_p99"]
        lines.append(
            f"knee: {knee['rate']:g} tasks/s = {knee['requests_per_s']:.1f} req/s, "
            f"{knee['orders_per_s']:.1f} orders/s; client p99 {p99}"
        )
        lines.append(
            f"  server p99 (gateway histogram): {server.get('latency_ms', {})}; "
            f"event age p99 per group: {server.get('event_age_ms', {})}"
        )
    else:
        lines.append("knee: not even the first step met every SLO")
    ceil = result.get("locust_ceiling")
    if ceil and "error" not in ceil:
        lines.append(
            f"locust ceiling (trivial upstream, {ceil['users']} users, no wait): "
            f"{ceil['requests_per_s']:g} req/s at {ceil['locust_cores']} cores, "
            f"{ceil['locust_cpu_ms_per_request']} ms CPU a request"
        )
    elif ceil:
        lines.append(f"locust ceiling: not measured ({ceil['error']})")
    return "\n".join(lines)


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
