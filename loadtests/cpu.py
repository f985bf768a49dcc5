"""CPU time per process over a load step (psutil), so a capacity search can say which
process saturated first: a 2-core machine runs Locust and the whole stack.

    before = Sample.now({"gateway-1": 4242, "locust": 4343})
    ... the step runs ...
    used = Sample.now(same pids).minus(before)   # {"gateway-1": 3.1, ...} CPU seconds

CPU seconds are user + system time of the process and its reaped children (a Locust
master's workers are separate pids, listed on their own). A process that exited or was
restarted during the step is left out of the difference rather than guessed at.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import psutil

MACHINE = "machine (all cores)"


def process_seconds(pid: int) -> tuple[float, float] | None:
    """(CPU seconds so far, creation time) of `pid`, or None if it is gone. The creation
    time tells a reused pid from the process that was sampled."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            t = process.cpu_times()
            return t.user + t.system + t.children_user + t.children_system, process.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot, all cores together."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


@dataclass(frozen=True)
class Sample:
    """CPU seconds per named process at one moment, plus the machine's busy seconds."""

    processes: Mapping[str, tuple[float, float]]
    machine: float

    @classmethod
    def now(cls, pids: Mapping[str, int]) -> Sample:
        seen = {name: process_seconds(pid) for name, pid in pids.items()}
        return cls({n: s for n, s in seen.items() if s is not None}, machine_busy_seconds())

    def minus(self, before: Sample) -> dict[str, float]:
        """CPU seconds each process used since `before` (the same process only), and the
        machine's busy seconds under `MACHINE`."""
        used = {
            name: round(now - before.processes[name][0], 3)
            for name, (now, created) in self.processes.items()
            if name in before.processes and before.processes[name][1] == created
        }
        used[MACHINE] = round(self.machine - before.machine, 3)
        return used


def busiest(used: Mapping[str, float], wall_seconds: float, top: int = 3) -> list[str]:
    """["gateway-1 0.93 cores", ...]: the `top` processes by CPU, most first."""
    rows = sorted(((s, n) for n, s in used.items() if n != MACHINE), reverse=True)[:top]
    return [f"{name} {seconds / max(wall_seconds, 1e-9):.2f} cores" for seconds, name in rows]


class Sampler:
    """Samples `pids` every `interval` seconds on a thread while the block runs; `used()`
    is the CPU between the first sample after `warmup` (start-up and imports are not
    the load) and the last one, with the wall seconds between them."""

    def __init__(self, pids: Mapping[str, int], interval: float = 1.0, warmup: float = 3.0):
        self.pids = dict(pids)
        self.interval, self.warmup = interval, warmup
        self._first: tuple[float, Sample] | None = None
        self._last: tuple[float, Sample] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _run(self) -> None:
        if self._stop.wait(self.warmup):
            return
        while True:
            taken = (time.monotonic(), Sample.now(self.pids))
            self._first = self._first or taken
            # Only a sample in which every first-seen process still runs: the last one
            # before a process exits, not one that has lost it.
            if set(self._first[1].processes) <= set(taken[1].processes):
                self._last = taken
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def used(self) -> tuple[dict[str, float], float]:
        """(CPU seconds per process and the machine's, wall seconds) between the samples."""
        if self._first is None or self._last is None or self._last is self._first:
            return {}, 0.0
        return self._last[1].minus(self._first[1]), self._last[0] - self._first[0]
