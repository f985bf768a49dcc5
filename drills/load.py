"""Background load for a drill: the Locust personas of `loadtests` at a set rate, from
an account pool prepared first (its accounts are what the event accounting follows).

    load = BackgroundLoad.start(gateway, run_dir, run_id, drill.load, seconds=300)
    ...
    stats = load.stop()      # SIGINT: Locust writes its statistics and exits

The run is bounded twice: by its shape's length and by `stop()`, which the drill runner
calls on every path out, including Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drills.spec import Load
from loadtests import gate, pool
from loadtests.run import ROOT, locust_commands


@dataclass
class BackgroundLoad:
    processes: list[subprocess.Popen[bytes]]
    accounts: list[dict[str, str]]
    out: Path

    @classmethod
    def start(
        cls, gateway: str, run_dir: Path, run_id: str, load: Load, seconds: float
    ) -> BackgroundLoad:
        run_dir.mkdir(parents=True, exist_ok=True)
        accounts = pool.prepare(gateway, min(load.users, 30), run_id)
        pool_file = run_dir / "pool.json"
        pool_file.write_text(json.dumps(accounts))
        pool_file.chmod(0o600)
        out = run_dir / "locust_stats.json"
        args = argparse.Namespace(mix=load.mix, workers=0, expect_remote_workers=0, seconds=seconds)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ASTRA_LOAD_RUN_ID": run_id,
            "ASTRA_LOAD_SHAPE": "steady",
            "ASTRA_LOAD_USERS": str(load.users),
            "ASTRA_LOAD_RATE": str(load.rate),
            "ASTRA_LOAD_SECONDS": str(seconds),
            "ASTRA_LOAD_POOL": str(pool_file),
            "ASTRA_LOAD_OUT": str(out),
        }
        (main,) = locust_commands(args, gateway, run_dir)
        with (run_dir / "locust.log").open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 - our interpreter, our locustfile
                main, env=env, stdout=log, stderr=log, cwd=ROOT
            )
        return cls([process], accounts, out)

    def running(self) -> bool:
        return all(p.poll() is None for p in self.processes)

    def stop(self) -> dict[str, Any]:
        """Stops Locust (it writes its statistics on the way out); what it saw, per
        SLO class: requests, 5xx + no answer, 429s."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(timeout=40)  # it lets requests in flight end (2 s late ones)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if not self.out.exists():  # killed before it wrote them: unknown, never "0 of 0"
            return {"requests": None, "errors_5xx": None, "classes": {},
                    "missing": "Locust wrote no statistics before it was stopped"}  # fmt: skip
        classes = gate.client_view(json.loads(self.out.read_text()))
        return {
            "requests": sum(c.requests for c in classes.values()),
            "errors_5xx": sum(c.errors for c in classes.values()),
            "throttled_429": sum(c.throttled for c in classes.values()),
            "classes": {name: c.summary() for name, c in classes.items()},
        }
