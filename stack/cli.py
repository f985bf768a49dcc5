"""`astra`: the stack launcher and operator tools."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from stack.config import StackSettings


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    if raw[:1] == ["drill"]:
        # The drills package drives the stack from outside (it imports stack, so stack
        # does not import it): `astra drill ...` is `python -m drills ...`.
        argv_drills = [sys.executable, "-m", "drills", *raw[1:]]
        os.execv(sys.executable, argv_drills)  # noqa: S606 - our interpreter, our module
    parser = argparse.ArgumentParser(prog="astra", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run Redis, the services and the gateway until Ctrl-C")
    up.add_argument(
        "--drill",
        action="store_true",
        help="Prometheus with the time-compressed SLO rules (alerts/rules-drill), 1 s intervals",
    )
    up.add_argument(
        "--chaos",
        action="store_true",
        help="every hop through a named proxy of the fault proxy (API on 127.0.0.1:8474+offset)",
    )
    sub.add_parser("drill", help="chaos drills: `astra drill list | run NAME | run --all`")
    docs = sub.add_parser("docs", help="regenerate the event catalogue (JSON Schema, AsyncAPI)")
    docs.add_argument("--check", action="store_true", help="fail if the committed docs differ")
    trace = sub.add_parser("trace", help="print one request's spans from every process as a tree")
    trace.add_argument("id", help="a trace ID, or a correlation ID (X-Correlation-ID)")
    trace.add_argument("--json", action="store_true", help="the spans as JSON lines")
    trace.add_argument("--run-dir", type=Path, help="default: ASTRA_RUN_DIR or var")
    logs = sub.add_parser("logs", help="every process's log lines of one request, in time order")
    logs.add_argument("--correlation-id", required=True)
    logs.add_argument("--json", action="store_true", help="the lines as JSON")
    logs.add_argument("--run-dir", type=Path, help="default: ASTRA_RUN_DIR or var")
    dash = sub.add_parser("dashboards", help="generate dashboards/*.json or render them to PNG")
    dash.add_argument("action", choices=["generate", "render"])
    dash.add_argument("--check", action="store_true", help="generate: fail if the JSON differs")
    dash.add_argument("--prometheus", help="render: default the stack's, 127.0.0.1:9090+offset")
    dash.add_argument("--service", default="trading", help="render: $service of Service detail")
    dash.add_argument("--run-dir", type=Path, help="render: PNGs go to <run_dir>/dashboards/")
    args = parser.parse_args(argv)
    if args.command == "up":
        from stack.up import run_stack

        # A flag only turns a setting on: ASTRA_DRILL / ASTRA_CHAOS=true work without it.
        settings = StackSettings()
        settings = settings.model_copy(
            update={"drill": settings.drill or args.drill, "chaos": settings.chaos or args.chaos}
        )
        return asyncio.run(run_stack(settings))
    if args.command == "docs":
        from stack.catalog_docs import write_catalog_docs

        return write_catalog_docs(check=args.check)
    if args.command == "trace":
        from stack.observe.traces import trace_command

        return trace_command(args.run_dir or StackSettings().run_dir, args.id, as_json=args.json)
    if args.command == "logs":
        from stack.observe.logs import logs_command

        run_dir = args.run_dir or StackSettings().run_dir
        return logs_command(run_dir, correlation_id=args.correlation_id, as_json=args.json)
    if args.command == "dashboards":
        from stack.observe.dashboards import generate

        if args.action == "generate":
            return generate(check=args.check)
        from stack.observe.render import render_dashboards

        settings = StackSettings()
        prometheus = args.prometheus or f"http://127.0.0.1:{settings.monitoring_port('prometheus')}"
        out = (args.run_dir or settings.run_dir) / "dashboards"
        for path in render_dashboards(prometheus, out, {"service": args.service, "slo": ".+"}):
            print(path)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
