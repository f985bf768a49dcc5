"""`astra drill` (`python -m drills`): list the drills, run one, some or all.

    astra drill list
    astra drill run trading-latency          # a stack of its own (chaos + drill profile)
    astra drill run trading-latency --without-defence      # must end `failed`
    astra drill run --all                    # every drill, an index, the fidelity table
    astra drill run --all --without-defence  # every drill with an off switch: all must fail
    astra drill run --fast                   # the subset `make test` runs
    astra drill run clean --stack-dir var    # attach to `astra up --chaos --drill`

Exit code: 0 when every drill ended as it must (passed; `failed` when run without its
defence), 1 otherwise, 2 for a drill file or stack that cannot be used.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drills import report
from drills.fidelity import fidelity
from drills.runner import DrillRun, run_with_signals
from drills.spec import DRILLS, Drill, DrillError, all_drills, find
from drills.stackio import RunningStack, StackError

ROOT = Path(__file__).resolve().parents[1]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="astra drill", description=__doc__.split("\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="the drills, their defence and the setting that turns it off")
    ls.add_argument("--drills-dir", type=Path, default=DRILLS)
    run = sub.add_parser("run", help="run drills; the exit code is the verdict")
    run.add_argument("names", nargs="*", help="drill ids (chaos/drills/<id>.yaml)")
    run.add_argument("--all", action="store_true", help="every drill")
    run.add_argument("--fast", action="store_true", help="the drills marked `fast: true`")
    run.add_argument(
        "--without-defence", action="store_true", help="turn the defence off: must fail"
    )
    run.add_argument("--stack-dir", type=Path, default=None, help="attach to this running stack")
    run.add_argument("--out", type=Path, default=ROOT / "var" / "drills")
    run.add_argument("--run-id", default=None)
    run.add_argument("--drills-dir", type=Path, default=DRILLS)
    run.add_argument(
        "--time-scale", type=float, default=1.0, help="shorten every phase (tests: e.g. 0.5)"
    )
    return top


def _list(folder: Path) -> int:
    try:
        drills = all_drills(folder)
    except DrillError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 2
    width = max(len(d.id) for d in drills)
    for d in drills:
        off = " ".join(f"{k}={v}" for k, v in d.defence.disable.items()) or "(no switch)"
        fast = " [fast]" if d.fast else ""
        print(f"{d.id.ljust(width)}  {d.title}{fast}")
        print(f"{' ' * width}  defence: {d.defence.name}; off: {off}")
    return 0


def _selected(args: argparse.Namespace) -> list[Drill]:
    if args.all or args.fast:
        drills = all_drills(args.drills_dir)
        drills = [d for d in drills if d.fast] if args.fast and not args.all else drills
        if args.without_defence:  # the controls: every drill whose defence has a switch
            for d in drills:
                if not d.defence.disable:
                    print(f"{d.id}: no off switch for {d.defence.name!r}: not run without it")
            drills = [d for d in drills if d.defence.disable]
        return drills
    if not args.names:
        raise DrillError("name a drill, or --all / --fast (see `astra drill list`)")
    twice = sorted({n for n in args.names if args.names.count(n) > 1})
    if twice:  # one run keeps one stack, journal and set of request ids per drill
        raise DrillError(f"named twice in one run: {', '.join(twice)} (run it again apart)")
    return [find(name, args.drills_dir) for name in args.names]


def _progress(drill: str) -> Any:
    last = [0.0]

    def show(phase: str, elapsed: float, values: dict[str, float | None]) -> None:
        if elapsed - last[0] < 5:
            return
        last[0] = elapsed

        def v(name: str, fmt: str) -> str:
            value = values.get(name)
            return "-" if value is None else format(value, fmt)

        print(
            f"  [{drill}] {phase:<8} {elapsed:5.0f}s  req/s {v('requests_per_s', '.1f')}  "
            f"5xx {v('error_ratio_5xx', '.2%')}  p95 read {v('p95_read_ms', '.0f')} ms  "
            f"write {v('p95_write_ms', '.0f')} ms  breaker {v('breaker_open', '.0f')}  "
            f"lag {v('consumer_lag', '.0f')}  outbox {v('outbox_backlog', '.0f')}",
            flush=True,
        )

    return show


def _env(drill: Drill, without_defence: bool) -> dict[str, str]:
    env = {f"ASTRA_INSTANCES_{svc}": str(n) for svc, n in drill.stack.instances.items()}
    env.update(drill.stack.env)
    if without_defence:
        env.update(drill.defence.disable)
    return env


async def _one(drill: Drill, args: argparse.Namespace, out: Path, run_id: str) -> dict[str, Any]:
    without = bool(args.without_defence)
    if without and not drill.defence.disable:
        raise DrillError(f"{drill.id}: its defence ({drill.defence.name}) has no off switch")
    print(
        f"\n== {drill.id}: {drill.title}"
        + (f"  [WITHOUT {drill.defence.name}: must fail]" if without else ""),
        flush=True,
    )
    if args.stack_dir:
        if without or drill.stack.instances or drill.stack.env:
            raise DrillError(
                f"{drill.id}: needs its own stack (its settings differ); drop --stack-dir"
            )
        stack = RunningStack.attach(args.stack_dir)
        runner = DrillRun(drill, stack, out, run_id, progress=_progress(drill.id),
                          time_scale=args.time_scale)  # fmt: skip
        return await run_with_signals(runner.run())
    suffix = ".without-defence" if without else ""
    with RunningStack.own(out / f"{drill.id}{suffix}-stack", _env(drill, without)) as stack:
        runner = DrillRun(drill, stack, out, run_id, without_defence=without,
                          progress=_progress(drill.id), time_scale=args.time_scale)  # fmt: skip
        return await run_with_signals(runner.run())


def ended_as_it_must(journal: dict[str, Any]) -> bool:
    """Passed with its defence; failed without it, with the fault in effect."""
    if journal.get("without_defence"):
        return journal["status"] == "failed" and not report.fault_missed(journal)
    return bool(journal["status"] == "passed")


def _run(args: argparse.Namespace) -> int:
    try:
        drills = _selected(args)
    except DrillError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 2
    run_id = args.run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.out / run_id
    out.mkdir(parents=True, exist_ok=True)
    journals: list[dict[str, Any]] = []
    started = time.monotonic()
    for drill in drills:
        try:
            journal = asyncio.run(_one(drill, args, out, run_id))
        except (DrillError, StackError) as e:
            print(f"refused: {e}", file=sys.stderr)
            return 2
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("interrupted: rolled back", file=sys.stderr)
            return 130
        name = report.report_name(journal).removesuffix(".html")
        (out / f"{name}.json").write_text(json.dumps(journal, indent=2, default=str))
        page = report.write_report(journal, out)
        journals.append(journal)
        verdict = journal["status"].upper()
        print(f"  -> {verdict}" + "".join(f"\n     {p}" for p in journal["problems"]))
        print(f"     {page}", flush=True)
    print()
    print(report.summary_table(journals))
    if len(journals) > 1:
        print()
        print(fidelity(journals).table())
        print(f"\n{report.write_index(journals, out)}")
    print(f"({time.monotonic() - started:.0f} s)")
    return 0 if all(ended_as_it_must(j) for j in journals) else 1


def main(argv: list[str] | None = None) -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    args = parser().parse_args(argv)
    if args.command == "list":
        return _list(args.drills_dir)
    return _run(args)
