"""The stack a drill runs against, read from its `stack.json`: where each process
runs (and its pid), the fault proxy's API and proxies, Prometheus, the secrets.

    stack = RunningStack.attach(run_dir)      # a running `astra up --chaos [--drill]`
    stack.gateway, stack.prometheus, stack.toxiproxy, stack.proxies, stack.pid("trading-1")

`RunningStack.own(...)` starts one (`astra up --chaos --drill` on a free port offset,
with the load limits raised and the drill's settings) for as long as the block runs.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.run import own_stack
from stack.redis_acl import url_for


class StackError(RuntimeError):
    """The stack is not there, or not in chaos mode."""


@dataclass
class RunningStack:
    run_dir: Path
    info: dict[str, Any]

    @classmethod
    def attach(cls, run_dir: Path) -> RunningStack:
        state = run_dir / "stack.json"
        if not state.exists():
            raise StackError(f"no running stack at {run_dir} (no stack.json): `astra up --chaos`")
        info = json.loads(state.read_text())
        if "chaos" not in info:
            raise StackError(f"the stack at {run_dir} is not in chaos mode: `astra up --chaos`")
        return cls(run_dir, info)

    @classmethod
    @contextmanager
    def own(cls, run_dir: Path, env: Mapping[str, str] = {}) -> Iterator[RunningStack]:
        with own_stack(run_dir, {"ASTRA_CHAOS": "true", **env}, drill=True) as info:
            yield cls(run_dir / "stack", info)

    def refresh(self) -> None:
        """Pids change when the supervisor restarts a child."""
        self.info = json.loads((self.run_dir / "stack.json").read_text())

    def url(self, name: str) -> str:
        for child in self.info["children"]:
            if child["name"] == name:
                return str(child["url"])
        raise StackError(f"no process {name!r} in the stack")

    def has(self, name: str) -> bool:
        return any(c["name"] == name for c in self.info["children"])

    def pid(self, name: str) -> int:
        self.refresh()
        for child in self.info["children"]:
            if child["name"] == name:
                return int(child["pid"])
        raise StackError(f"no process {name!r} in the stack")

    @property
    def processes(self) -> list[str]:
        return [str(c["name"]) for c in self.info["children"]]

    @property
    def gateway(self) -> str:
        return self.url("gateway-1")

    @property
    def prometheus(self) -> str | None:
        return self.url("prometheus") if self.has("prometheus") else None

    @property
    def toxiproxy(self) -> str:
        return str(self.info["chaos"]["api"])

    @property
    def proxies(self) -> dict[str, dict[str, str]]:
        return dict(self.info["chaos"]["proxies"])

    @property
    def secrets(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(Path(self.info["secrets_file"]).read_text())
        return loaded

    def redis_url_as(self, user: str) -> str:
        """The stack's Redis, directly (not through a proxy), as that ACL user."""
        return url_for(str(self.info["redis_url"]), user, self.secrets["redis_passwords"][user])

    def signal(self, name: str, sig: signal.Signals) -> int:
        pid = self.pid(name)
        os.kill(pid, sig)
        return pid

    def alive(self, name: str) -> bool:
        try:
            os.kill(self.pid(name), 0)
        except (ProcessLookupError, StackError):
            return False
        return True
