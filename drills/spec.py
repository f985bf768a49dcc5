"""A drill as data: `chaos/drills/<id>.yaml`, validated before anything is injected.

    id, title, description
    defence     what the drill proves, and the settings that turn it off
    target      proxies (globs over the stack's proxy names) or processes; blast radius
    fault       a Toxiproxy toxic | a proxy disabled | a process signalled | Redis stopped |
                poison entries on a stream | a stream trimmed past a group's pending
    duration    how long the fault holds (bounded)
    load        Locust personas at a set rate, for the whole drill
    hypothesis  probes with tolerances, judged before, during and after the fault
    alerts      expected (fire within N s of the fault, drill profile) and forbidden
    abort       conditions checked every second that end the fault early
    recovery    seconds the hypothesis has to hold again after the fault is removed

A file with an unknown field, a toxic or toxic attribute Toxiproxy does not know, no
hypothesis, a probe without a tolerance, or a duration above the maximum is refused
with the file, the field and the reason (`DrillError`). Whether the named proxies exist
is checked against the running stack (`check_targets`) before the fault goes in.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts import CATALOG

DRILLS = Path(__file__).resolve().parents[1] / "chaos" / "drills"
MAX_FAULT_SECONDS = 120.0
MAX_RECOVERY_SECONDS = 180.0

# Toxiproxy's toxics and their attributes (its README, "Toxics"); the fault proxy
# implements the same set (chaos/faultproxy/toxics).
TOXICS: dict[str, frozenset[str]] = {
    "latency": frozenset({"latency", "jitter"}),
    "bandwidth": frozenset({"rate"}),
    "slow_close": frozenset({"delay"}),
    "timeout": frozenset({"timeout"}),
    "reset_peer": frozenset({"timeout"}),
    "slicer": frozenset({"average_size", "size_variation", "delay"}),
    "limit_data": frozenset({"bytes"}),
}


class DrillError(ValueError):
    """A drill file that cannot be run: says which file, which field and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defence(_Strict):
    name: str = Field(min_length=3)  # "circuit breaker", "transactional outbox", ...
    # The settings that turn it off (`astra drill run NAME --without-defence`); empty
    # when the drill proves an alert or an honest answer rather than a defence.
    disable: dict[str, str] = Field(default_factory=dict)


class Target(_Strict):
    proxies: tuple[str, ...] = ()  # globs over proxy names: "gateway_trading-*"
    processes: tuple[str, ...] = ()  # stack children: "gamification-1"
    share: float = Field(default=1.0, gt=0, le=1)  # of the matched proxies / processes

    @model_validator(mode="after")
    def _something(self) -> Target:
        if not self.proxies and not self.processes:
            raise ValueError("a target names proxies or processes")
        return self


class Toxic(_Strict):
    type: str
    attributes: dict[str, int | float] = Field(default_factory=dict)
    stream: Literal["upstream", "downstream"] = "downstream"
    toxicity: float = Field(default=1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _known(self) -> Toxic:
        if self.type not in TOXICS:
            raise ValueError(f"unknown toxic {self.type!r}; Toxiproxy knows {sorted(TOXICS)}")
        unknown = set(self.attributes) - TOXICS[self.type]
        if unknown:
            raise ValueError(
                f"toxic {self.type!r} has no attribute {sorted(unknown)}; "
                f"it takes {sorted(TOXICS[self.type])}"
            )
        return self


class ToxicFault(_Strict):
    kind: Literal["toxic"]
    toxic: Toxic
    also: tuple[Toxic, ...] = ()  # more toxics on the same proxies (bandwidth + slicer)
    # Drop the proxies' open connections once the toxics are in (disable, enable), so a
    # toxicity below 1 applies to fresh connections: a keep-alive pool would otherwise
    # go on using the ones the draw spared, and the fault would touch nothing.
    reconnect: bool = False
    # Or, staggered: from the start and every this many seconds, one target proxy at a
    # time (spread over the period, so the others keep serving a retry). Toxiproxy
    # draws toxicity once per connection, so without churn a keep-alive pool settles
    # on the spared connections within a second and a per-connection fault fades out.
    reconnect_every_seconds: float | None = Field(default=None, gt=0, le=60)

    @model_validator(mode="after")
    def _one_way_to_reconnect(self) -> ToxicFault:
        if self.reconnect and self.reconnect_every_seconds:
            raise ValueError("reconnect (all at once) or reconnect_every_seconds, not both")
        return self


class DisableFault(_Strict):
    kind: Literal["disable"]  # the proxies refuse and drop connections


class MidBatch(_Strict):
    """Make "mid-batch" true: slow the process's own Redis link (a latency toxic on
    `proxy`), so a batch is in hand for a while, and send the signal only once
    `group` holds an entry delivered less than `latency_ms` ago (XPENDING: its reply is
    still on the slowed way, so its ack cannot have been sent), within `within_seconds`.
    Without it a consumer that handles an event in a millisecond is almost never
    killed with anything pending, and the drill passes with its defence off."""

    proxy: str
    latency_ms: int = Field(default=100, gt=0, le=2000)
    group: str
    within_seconds: float = Field(default=10.0, gt=0, le=60)


class SignalFault(_Strict):
    kind: Literal["signal"]
    signal: Literal["SIGKILL", "SIGSTOP"]  # SIGKILL: the supervisor restarts it; STOP: CONT
    mid_batch: MidBatch | None = None


class RedisStopFault(_Strict):
    kind: Literal["redis_stop"]  # the stack's own redis-server is paused (SIGSTOP)


class PoisonFault(_Strict):
    """Entries no consumer can apply, written to `stream` with the Redis user of its
    declared producer (the only one whose ACL may XADD there): what a producer with a
    bug, or one a release ahead of its consumers, would publish. The target names the
    consumer processes that must set them aside. Nothing to roll back: each consumer
    group dead-letters them, and what happens to the dead letters is the runbook's."""

    kind: Literal["poison"]
    stream: str
    count: int = Field(default=5, ge=1, le=1000)

    @model_validator(mode="after")
    def _a_stream_of_the_catalog(self) -> PoisonFault:
        if CATALOG.for_stream(self.stream) is None:
            known = ", ".join(sorted(et.stream_key for et in CATALOG))
            raise ValueError(f"stream {self.stream!r} is no event stream (known: {known})")
        return self


class TrimFault(_Strict):
    """Retention reaching past a group's pending entries. The target process (a member
    of `mid_batch.group`) is killed mid-batch, so it holds entries delivered and not yet
    applied; before the supervisor restarts it, the stream is trimmed as its producer
    can (XADD with MINID, the producer's only right to trim) up to the newest entry
    every group has been delivered: nothing undelivered goes, but the killed consumer's
    batch does. In production a retention shorter than a stalled group's lag does this
    (`Retention.check` refuses such a setting; a clock running ahead under age-based
    retention does not ask). The trimmed batch is lost by design: the accounting
    expects exactly those events' effects to be missing, and nothing else."""

    kind: Literal["trim"]
    stream: str
    mid_batch: MidBatch

    @model_validator(mode="after")
    def _a_stream_of_the_catalog(self) -> TrimFault:
        if CATALOG.for_stream(self.stream) is None:
            raise ValueError(f"stream {self.stream!r} is no event stream")
        return self


Fault = Annotated[
    ToxicFault | DisableFault | SignalFault | RedisStopFault | PoisonFault | TrimFault,
    Field(discriminator="kind"),
]


class Tolerance(_Strict):
    """The probe's value must be within [min, max] (either bound may be left out)."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Tolerance:
        if self.min is None and self.max is None:
            raise ValueError("a tolerance needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("tolerance min is above max")
        return self

    def holds(self, value: float | None) -> bool:
        if value is None:
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


Phase = Literal["before", "during", "after"]


class Probe(_Strict):
    """One steady-state measurement: PromQL over the stack's Prometheus (`{{window}}`
    is the phase's length), or an HTTP call through the gateway (value: the share of
    `samples` answers whose status is in `expect`)."""

    name: str
    kind: Literal["promql", "http"]
    query: str | None = None
    method: Literal["GET", "POST"] = "GET"
    path: str | None = None
    auth: bool = False  # with a pool account's token
    json_body: dict[str, Any] | None = Field(default=None, alias="json")
    idempotency_key: bool = False
    expect: tuple[int, ...] = (200,)
    expect_header: str | None = None  # present on every expected answer (Retry-After)
    within_seconds: float | None = Field(default=None, gt=0)  # a later answer counts as bad
    samples: int = Field(default=5, ge=1, le=50)
    tolerance: Tolerance
    phases: tuple[Phase, ...] = ("before", "during", "after")
    missing: float | None = None  # the value when the query selects nothing (else: fails)
    # True: this probe shows that the fault took effect at all (resets reached the
    # gateway's attempts), not that a defence held. Without the defence, its failure
    # makes the run inconclusive instead of the control's expected failure (found: a
    # reset-peer control "failed as it must" in a run where no reset reached a request).
    fault_effect: bool = False

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _complete(self) -> Probe:
        if self.kind == "promql" and not self.query:
            raise ValueError(f"probe {self.name!r}: a promql probe needs a query")
        if self.kind == "http" and not (self.path and self.path.startswith("/")):
            raise ValueError(f"probe {self.name!r}: an http probe needs a path from /")
        return self


class ExpectedAlert(_Strict):
    name: str
    within_seconds: float = Field(gt=0, le=300)  # of the fault going in, drill profile
    clears_within_seconds: float | None = Field(default=None, gt=0, le=300)  # after removal
    # Whose clearing is judged: a burn-rate alert's page and ticket share its name, and a
    # ticket keeps firing for its long window by design (hours, minutes in the drill
    # profile) after a short fault; None: every tier of it.
    clearing_severity: Literal["page", "ticket"] | None = None


class Alerts(_Strict):
    expected: tuple[ExpectedAlert, ...] = ()
    forbidden: tuple[str, ...] = ()
    # Alerts not named either way are reported as "unexpected" when they fire; `allowed`
    # lists those a drill knowingly causes as a side effect (and says so in its text).
    allowed: tuple[str, ...] = ()


class Abort(_Strict):
    name: str
    query: str  # PromQL; `{{window}}` is `for_seconds`
    above: float
    for_seconds: float = Field(default=5, gt=0, le=60)


class Load(_Strict):
    rate: float = Field(default=20, gt=0, le=200)  # tasks/s, as `make load`
    users: int = Field(default=10, ge=1, le=100)
    mix: Literal["default", "traders", "orders"] = "default"


class StackShape(_Strict):
    instances: dict[str, int] = Field(default_factory=dict)  # ASTRA_INSTANCES_<svc>
    env: dict[str, str] = Field(default_factory=dict)  # extra settings for this drill


class Accounting(_Strict):
    """Event accounting is in every drill; a drill that loses events on purpose when
    its defence is off still counts them (that is how it fails)."""

    settle_seconds: float = Field(default=30, gt=0, le=120)  # for the bus to drain


class Drill(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,48}$")
    title: str = Field(min_length=5)
    description: str = Field(min_length=10)
    defence: Defence
    target: Target | None = None  # None: the clean drill
    fault: Fault | None = None
    duration_seconds: float = Field(gt=0, le=MAX_FAULT_SECONDS)
    baseline_seconds: float = Field(default=15, ge=5, le=60)
    recovery_seconds: float = Field(default=60, gt=0, le=MAX_RECOVERY_SECONDS)
    load: Load = Load()
    stack: StackShape = StackShape()
    hypothesis: tuple[Probe, ...] = Field(min_length=1)
    alerts: Alerts = Alerts()
    abort: tuple[Abort, ...] = ()
    accounting: Accounting = Accounting()
    fast: bool = False  # in `make test`'s chaos subset

    @model_validator(mode="after")
    def _fault_and_target(self) -> Drill:
        if (self.fault is None) != (self.target is None):
            raise ValueError("fault and target go together (neither: the clean drill)")
        proxied = isinstance(self.fault, (ToxicFault, DisableFault))
        if proxied and self.target and not self.target.proxies:
            raise ValueError("a toxic or disable fault targets proxies")
        if isinstance(self.fault, SignalFault) and self.target and not self.target.processes:
            raise ValueError("a signal fault targets processes")
        hits = self.fault if isinstance(self.fault, (PoisonFault, TrimFault)) else None
        if hits is not None and self.target and not self.target.processes:
            raise ValueError(f"a {hits.kind} fault targets the consumer processes it hits")
        return self

    @property
    def bounded_seconds(self) -> float:
        """The longest this drill can run once the stack is ready."""
        return (
            self.baseline_seconds
            + self.duration_seconds
            + self.recovery_seconds
            + self.accounting.settle_seconds
        )


def _where(error: dict[str, Any]) -> str:
    return ".".join(str(p) for p in error["loc"]) or "(top level)"


def load_drill(path: Path) -> Drill:
    """The drill in `path`, or DrillError naming the file, the field and the reason."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise DrillError(f"{path}: cannot be read as YAML: {e}") from e
    if not isinstance(raw, dict):
        raise DrillError(f"{path}: (top level): a drill is a mapping")
    try:
        drill = Drill.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise DrillError(f"{path}: {_where(dict(first))}: {first['msg']}{more}") from e
    if drill.id != path.stem:
        raise DrillError(f"{path}: id: {drill.id!r} is not the file's name {path.stem!r}")
    return drill


def all_drills(folder: Path = DRILLS) -> list[Drill]:
    return [load_drill(p) for p in sorted(folder.glob("*.yaml"))]


def find(name: str, folder: Path = DRILLS) -> Drill:
    path = folder / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise DrillError(f"no drill {name!r} in {folder} (known: {known})")
    return load_drill(path)


def matching(patterns: Iterable[str], names: Iterable[str]) -> list[str]:
    """The names any glob matches, in order."""
    names = list(names)
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def check_targets(drill: Drill, proxies: Iterable[str], processes: Iterable[str]) -> None:
    """DrillError unless every proxy and process glob matches something in the stack."""
    if drill.target is None:
        return
    proxies, processes = list(proxies), list(processes)
    for pattern in drill.target.proxies:
        if not matching([pattern], proxies):
            raise DrillError(
                f"{drill.id}: target.proxies: {pattern!r} matches no proxy of the stack "
                f"({', '.join(proxies) or 'none: is it running with --chaos?'})"
            )
    for pattern in drill.target.processes:
        if not matching([pattern], processes):
            raise DrillError(
                f"{drill.id}: target.processes: {pattern!r} matches no process "
                f"({', '.join(processes)})"
            )
    fault = drill.fault
    mid = fault.mid_batch if isinstance(fault, (SignalFault, TrimFault)) else None
    if mid is not None and mid.proxy not in proxies:
        raise DrillError(
            f"{drill.id}: fault.mid_batch.proxy: {mid.proxy!r} is no proxy of the "
            f"stack ({', '.join(proxies) or 'none: is it running with --chaos?'})"
        )
