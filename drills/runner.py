"""One drill, start to verdict, with a rollback that always runs.

    reset (no toxic, nothing stopped, from any earlier run)
    -> load (Locust personas, pool accounts) -> baseline: hypothesis "before"
    -> inject the fault (Toxiproxy API / signals) -> observe: aborts, alerts, timeline
    -> hypothesis "during" -> remove (rollback) -> recover: "after" within the budget
    -> stop load -> event accounting -> verdict -> journal

The fault goes in only through the Toxiproxy HTTP API (`chaos.client`) and process
signals, so the same drill runs against the real Toxiproxy. The rollback (`POST
/reset`, SIGCONT what was paused, wait for the supervisor to restart what was killed)
runs in a `finally`, also on Ctrl-C, SIGTERM, an abort or a crash of the runner.

Verdicts: `aborted` (an abort condition held), `failed` (a probe out of tolerance in a
phase it is judged in, the hypothesis not back within the recovery budget, an expected
alert that did not fire in time, a forbidden alert that fired, or accounting not
exact), else `passed`. The journal has Chaos Toolkit's shape (`status`, `deviated`,
`steady_states`, `run`, `rollbacks`) plus alerts, times to detect and recover, the
event accounting and a per-second timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import math
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from backbone import keys
from backbone.ids import uuid7
from chaos.client import ToxiproxyClient
from contracts import CATALOG
from drills import accounting
from drills.load import BackgroundLoad
from drills.observe import AlertRecord, Watch
from drills.spec import (
    DisableFault,
    Drill,
    ExpectedAlert,
    MidBatch,
    Phase,
    PoisonFault,
    RedisStopFault,
    SignalFault,
    ToxicFault,
    TrimFault,
    check_targets,
    matching,
)
from drills.stackio import RunningStack

Progress = Callable[[str, float, dict[str, float | None]], None]
TOXIC_NAME = "drill"
RECOVERY_WINDOW_SECONDS = 10.0  # the "after" probes look back this far while recovering
# The "during" probes look back to the fault's start and this much further: `increase()`
# needs a sample from before the fault's first error (drill profile: 1 s scrapes), or an
# error in the fault's first second falls outside the window (found: a 502 0.2 s after
# the injection, invisible to the 5xx-ratio probe).
SCRAPE_MARGIN_SECONDS = 2.0
# An expected alert already firing when the baseline ends cannot show that the fault
# fired it (found: a stack's start-up backlog firing XpEventsStale, taken for a 0.0 s
# detection). The baseline waits this long at most for it to stop, then gives up.
QUIET_SECONDS = 60.0


def text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry_id(raw: Any) -> tuple[int, int]:
    ms, _, seq = text_of(raw).partition("-")
    return int(ms), int(seq or 0)


def _clearing_key(alert: ExpectedAlert) -> str:
    """The `AlertRecord` key whose clearing an expected alert is judged by."""
    return f"{alert.name}/{alert.clearing_severity}" if alert.clearing_severity else alert.name


def _quiet(_: str, __: float, ___: dict[str, float | None]) -> None:
    return None


def _step(activity: str, error: object = None) -> dict[str, str]:
    return {"activity": activity, "status": "succeeded" if error is None else f"failed: {error}"}


@dataclass
class _Journal:
    drill: Drill
    run_id: str
    without_defence: bool
    start: float = field(default_factory=time.time)
    phases: list[dict[str, Any]] = field(default_factory=list)
    run: list[dict[str, Any]] = field(default_factory=list)
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    steady: dict[str, dict[str, Any]] = field(default_factory=dict)
    fault: dict[str, Any] = field(default_factory=dict)
    abort: dict[str, Any] | None = None
    time_to_recover: float | None = None
    timeline_t: list[float] = field(default_factory=list)
    timeline: dict[str, list[float | None]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def phase(self, name: str) -> None:
        now = time.time()
        if self.phases and self.phases[-1]["end"] is None:
            self.phases[-1]["end"] = now
        self.phases.append({"name": name, "start": now, "end": None})

    def activity(self, name: str, status: str, output: str = "", start: float = 0.0) -> None:
        now = time.time()
        self.run.append(
            {
                "activity": name,
                "start": start or now,
                "end": now,
                "status": status,
                "output": output,
            }
        )


class DrillRun:
    """Runs `drill` against `stack` (chaos mode, drill profile); `await run()` returns
    the journal (a dict, as written to `<out>/<drill>.json`)."""

    def __init__(
        self,
        drill: Drill,
        stack: RunningStack,
        out: Path,
        run_id: str,
        *,
        without_defence: bool = False,
        progress: Progress = _quiet,
        time_scale: float = 1.0,
    ) -> None:
        self.drill, self.stack, self.out, self.run_id = drill, stack, out, run_id
        self.progress = progress
        self.scale = time_scale  # tests may shorten the phases; 1.0 = as the file says
        self.journal = _Journal(drill, run_id, without_defence)
        self.alerts = AlertRecord()
        self.load: BackgroundLoad | None = None
        self.watch: Watch | None = None
        self.toxiproxy = ToxiproxyClient(stack.toxiproxy)
        self._paused: list[str] = []
        self._killed: dict[str, int] = {}
        # A trim fault's: the entries it removed (the trade index reads the stream) and
        # the events whose effects it took away on purpose (accounting expects them gone).
        self._archived: list[accounting.RawEntry] = []
        self._lost_by_design: frozenset[str] = frozenset()
        self._sampler: asyncio.Task[None] | None = None
        self._churn: asyncio.Task[int] | None = None  # a fault's periodic reconnects
        self._phase = "start"
        self._load_stats: dict[str, Any] = {}

    # -- the drill -------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        check_targets(self.drill, self.stack.proxies, self.stack.processes)
        try:
            await self._clean_slate()
            await self._start_load()
            self._sampler = asyncio.create_task(self._sample_forever())
            if await self._baseline():
                await self._inject()
                try:
                    await self._observe()
                finally:
                    await self._rollback()
                await self._recover()
        except asyncio.CancelledError:
            self.journal.problems.append("interrupted (Ctrl-C or SIGTERM): rolled back")
            raise
        finally:
            await self._rollback()  # idempotent: a second pass finds nothing left to undo
            if self._sampler is not None:
                self._sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._sampler
            load_stats = await asyncio.to_thread(self.load.stop) if self.load else {}
            self.journal.run.append({"activity": "load stopped", "status": "succeeded"})
            self._load_stats = load_stats
            await self.toxiproxy.aclose()
        counted = await self._account()
        if self.watch is not None:
            await self.watch.aclose()
        return self._verdict(counted)

    async def _clean_slate(self) -> None:
        """No toxic and no paused process from an earlier, interrupted run."""
        await self.toxiproxy.wait_ready()
        await self.toxiproxy.reset()
        for name in self.stack.processes:
            with contextlib.suppress(Exception):
                self.stack.signal(name, signal.SIGCONT)
        self.journal.activity("reset toxics and resume every process", "succeeded")

    async def _start_load(self) -> None:
        self.journal.phase("load")
        seconds = self._seconds(
            self.drill.baseline_seconds + self.drill.duration_seconds + self.drill.recovery_seconds
        )
        started = time.time()
        self.load = await asyncio.to_thread(
            BackgroundLoad.start,
            self.stack.gateway,
            self.out / f"{self.drill.id}-load",
            self.run_id,
            self.drill.load,
            seconds + 30,
        )
        token = self.load.accounts[0]["token"] if self.load.accounts else None
        self.watch = Watch(self.stack.prometheus, self.stack.gateway, token)
        self.journal.activity(
            f"load: {self.drill.load.rate:g} tasks/s, {self.drill.load.users} users, "
            f"mix {self.drill.load.mix}, {len(self.load.accounts)} pool accounts",
            "succeeded",
            start=started,
        )

    async def _baseline(self) -> bool:
        self.journal.phase("baseline")
        self._phase = "baseline"
        await self._wait(self._seconds(self.drill.baseline_seconds))
        held = await self._judge("before", self._seconds(self.drill.baseline_seconds))
        if not held:
            self.journal.problems.append("the steady state did not hold before the fault")
            return False
        expected = {a.name for a in self.drill.alerts.expected}
        if not await self._poll(
            lambda: not expected & self.alerts.firing_now(), self._seconds(QUIET_SECONDS)
        ):
            already = ", ".join(sorted(expected & self.alerts.firing_now()))
            self.journal.problems.append(
                f"{already} fired before the fault and did not stop within "
                f"{QUIET_SECONDS:g} s: the drill could not tell what the fault fires"
            )
            return False
        return True

    async def _inject(self) -> None:
        self.journal.phase("inject")
        self._phase = "fault"
        fault, target = self.drill.fault, self.drill.target
        start = time.time()
        if fault is None or target is None:  # the clean drill: the same phases, no fault
            self.journal.fault = {"kind": "none", "targets": [], "start": start, "end": None}
            self.journal.activity("inject: nothing (the control)", "succeeded", start=start)
            return
        if isinstance(fault, (ToxicFault, DisableFault)):
            names = self._blast(matching(target.proxies, self.stack.proxies), target.share)
            for name in names:
                proxy = await self.toxiproxy.get_proxy(name)
                if isinstance(fault, ToxicFault):
                    for n, t in enumerate((fault.toxic, *fault.also)):
                        await proxy.add_toxic(
                            t.type,
                            stream=t.stream,
                            toxicity=t.toxicity,
                            name=f"{TOXIC_NAME}-{n}",
                            **{k: int(v) for k, v in t.attributes.items()},
                        )
                    if fault.reconnect:
                        await proxy.disable()
                        await proxy.enable()
                else:
                    await proxy.disable()
            what = f"{fault.kind} on {', '.join(names)}"
            if isinstance(fault, ToxicFault) and fault.reconnect_every_seconds and names:
                self._churn = asyncio.create_task(
                    self._reconnect_forever(names, self._seconds(fault.reconnect_every_seconds))
                )
                what += f", connections dropped every {fault.reconnect_every_seconds:g} s"
        elif isinstance(fault, SignalFault):
            names = self._blast(matching(target.processes, self.stack.processes), target.share)
            if fault.mid_batch is not None:
                await self._until_mid_batch(fault.mid_batch)
            for name in names:
                if fault.signal == "SIGSTOP":
                    self._paused.append(name)
                    self.stack.signal(name, signal.SIGSTOP)
                else:
                    self._killed[name] = self.stack.signal(name, signal.SIGKILL)
            what = f"{fault.signal} to {', '.join(names)}"
        elif isinstance(fault, PoisonFault):
            names = self._blast(matching(target.processes, self.stack.processes), target.share)
            producer = await self._poison(fault)
            what = (
                f"{fault.count} poison entries on {fault.stream} (as {producer}), "
                f"for {', '.join(names)}"
            )
        elif isinstance(fault, TrimFault):
            names = self._blast(matching(target.processes, self.stack.processes), target.share)
            await self._until_mid_batch(fault.mid_batch)
            for name in names:
                self._killed[name] = self.stack.signal(name, signal.SIGKILL)
            what = f"SIGKILL to {', '.join(names)} mid-batch, then " + await self._trim(fault)
        elif isinstance(fault, RedisStopFault):
            names = ["redis"]
            self._paused.append("redis")
            self.stack.signal("redis", signal.SIGSTOP)
            what = "redis-server paused (SIGSTOP)"
        else:  # pragma: no cover - the spec's union is exhaustive
            raise AssertionError(fault)
        # Merged, not replaced: the mid-batch wait may have found that the fault took
        # no effect (`took_effect`), and a trim records what it removed.
        self.journal.fault = {
            **self.journal.fault,
            "kind": fault.kind,
            "targets": names,
            "start": start,
            "end": None,
        }
        self.journal.activity(f"inject: {what}", "succeeded", start=start)

    async def _poison(self, fault: PoisonFault) -> str:
        """XADD entries whose envelope is well-formed but whose data fits no model, as
        the stream's declared producer (its ACL user): every consumer group must
        dead-letter each one and carry on. Returns the producer's name."""
        event_type = CATALOG.for_stream(fault.stream)
        assert event_type is not None  # the spec checked it
        producer = event_type.producers[0]
        redis = Redis.from_url(self.stack.redis_url_as(producer), socket_timeout=5)
        try:
            pipe = redis.pipeline(transaction=False)
            for n in range(fault.count):
                body = {
                    "event_id": str(uuid7()),
                    "type": event_type.type,
                    "version": event_type.version,
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "producer": producer,
                    "correlation_id": f"drill-poison-{n}",
                    "data": {"drill": "poison", "n": n},  # none of the model's fields
                }
                pipe.xadd(fault.stream, {keys.ENVELOPE_FIELD: orjson.dumps(body)})
            await pipe.execute()
        finally:
            await redis.aclose()
        return producer

    async def _trim(self, fault: TrimFault) -> str:
        """Trim `fault.stream` up to the newest entry every group has been delivered, as
        its producer (XADD MINID, with a marker entry no consumer can apply). Keeps the
        trimmed entries for the accounting (the trade index reads the stream) and which
        of them `mid_batch.group` held unapplied: the effects lost by design."""
        event_type = CATALOG.for_stream(fault.stream)
        assert event_type is not None  # the spec checked it
        group = fault.mid_batch.group
        reader = Redis.from_url(self.stack.redis_url_as("operator"), socket_timeout=5)
        writer = Redis.from_url(self.stack.redis_url_as(event_type.producers[0]), socket_timeout=5)
        try:
            groups = await reader.xinfo_groups(fault.stream)
            ms, seq = min(_entry_id(g["last-delivered-id"]) for g in groups)
            minid = f"{ms}-{seq + 1}"  # MINID keeps ids >= it: the last delivered goes too
            self._archived = list(await reader.xrange(fault.stream, "-", f"({minid}") or [])
            held = await reader.xpending_range(fault.stream, group, "-", f"({minid}", 10_000)
            lost = {text_of(p["message_id"]) for p in held}
            marker = {"drill": "trim marker: no event"}
            await writer.xadd(
                fault.stream,
                {keys.ENVELOPE_FIELD: orjson.dumps(marker)},
                minid=minid,
                approximate=False,
            )
        finally:
            await reader.aclose()
            await writer.aclose()
        self._lost_by_design = frozenset(
            accounting.event_ids(e for e in self._archived if text_of(e[0]) in lost)
        )
        self.journal.fault["trimmed"] = {
            "stream": fault.stream,
            "minid": minid,
            "entries": len(self._archived),
            "pending_for": group,
            "lost_by_design": sorted(self._lost_by_design),
        }
        if not lost:
            self.journal.fault["took_effect"] = False
            self.journal.problems.append(f"the trim found nothing pending for {group}")
        return (
            f"{fault.stream} trimmed below {minid} as {event_type.producers[0]}: "
            f"{len(self._archived)} entries, {len(lost)} of them held unapplied by {group}"
        )

    async def _observe(self) -> None:
        self.journal.phase("observe")
        assert self.watch is not None
        deadline = time.monotonic() + self._seconds(self.drill.duration_seconds)
        held_since: dict[str, float] = {}
        while time.monotonic() < deadline:
            for abort in self.drill.abort:
                value = await self.watch.aborting(abort)
                if value is not None and value > abort.above:
                    since = held_since.setdefault(abort.name, time.monotonic())
                    if time.monotonic() - since >= abort.for_seconds:
                        self.journal.abort = {
                            "condition": f"{abort.name}: {value:.4g} > {abort.above:g} "
                            f"for {abort.for_seconds:g} s",
                            "at": time.time(),
                        }
                        return
                else:
                    held_since.pop(abort.name, None)
            await asyncio.sleep(1.0)  # the observation cadence, not a synchronisation
        since_fault = time.time() - float(self.journal.fault.get("start") or time.time())
        await self._judge("during", since_fault + SCRAPE_MARGIN_SECONDS)

    async def _until_mid_batch(self, mid: MidBatch) -> None:
        """Slow the link (the rollback's reset removes the toxic), then wait until the
        group holds delivered, unacknowledged entries; the signal follows at once."""
        proxy = await self.toxiproxy.get_proxy(mid.proxy)
        await proxy.add_toxic(
            "latency", stream="downstream", name=f"{TOXIC_NAME}-mid-batch", latency=mid.latency_ms
        )
        redis = Redis.from_url(self.stack.redis_url_as("operator"), socket_timeout=2)
        try:
            # Only an entry delivered less than the toxic's latency ago counts: its reply
            # is still on the slowed way to the consumer, so its ack cannot have been
            # sent (found: an entry seen pending whose ack was already in flight, the
            # toxic slowing replies only, and the kill lost nothing).
            async def held() -> int:
                fresh = 0
                async for stream in redis.scan_iter(match="astra.*", _type="STREAM"):
                    with contextlib.suppress(ResponseError):  # a stream without this group
                        entries = await redis.xpending_range(stream, mid.group, "-", "+", 100)
                        fresh += sum(
                            1 for e in entries if int(e["time_since_delivered"]) < mid.latency_ms
                        )
                return fresh

            deadline = time.monotonic() + self._seconds(mid.within_seconds)
            pending = await held()
            while not pending and time.monotonic() < deadline:
                await asyncio.sleep(0.02)  # XPENDING's poll: a batch lasts ~100s of ms here
                pending = await held()
        finally:
            await redis.aclose()
        self.journal.activity(
            f"mid-batch: {mid.latency_ms} ms on {mid.proxy}; {mid.group} held {pending} "
            f"delivered under {mid.latency_ms} ms ago, unacknowledged",
            "succeeded" if pending else "failed",
        )
        if not pending:
            self.journal.fault["took_effect"] = False  # a control failing now proves nothing
            self.journal.problems.append(
                f"{mid.group} held nothing pending within {mid.within_seconds:g} s: "
                "the kill is not mid-batch"
            )

    async def _reconnect_forever(self, names: list[str], period: float) -> int:
        """Drop one target proxy's open connections (disable, enable) at once and then
        every period / len(names) seconds, round-robin; returns how many drops were
        made. Never two at once: a request cut off on one is retried on another."""
        drops = 0
        step = period / len(names)
        while True:
            for name in names:
                proxy = await self.toxiproxy.get_proxy(name)
                await proxy.disable()
                await proxy.enable()
                drops += 1
                try:
                    await asyncio.sleep(step)
                except asyncio.CancelledError:
                    return drops

    async def _stop_churn(self) -> None:
        churn, self._churn = self._churn, None
        if churn is None:
            return
        churn.cancel()
        await asyncio.wait([churn])  # never re-raises the task's cancellation here
        if churn.cancelled():  # stopped mid-drop: the reset below re-enables the proxy
            self.journal.activity("periodic reconnects: stopped mid-drop", "succeeded")
        elif (error := churn.exception()) is not None:  # reported; the reset still runs
            self.journal.activity(f"periodic reconnects: {error}", "failed")
        else:
            self.journal.activity(f"periodic reconnects: {churn.result()} drops", "succeeded")

    async def _rollback(self) -> None:
        """Undo the fault; safe to call twice (a second call finds nothing to undo)."""
        await self._stop_churn()  # first: a drop after the reset would disable a proxy anew
        if self.journal.fault and self.journal.fault.get("end") is None:
            self.journal.fault["end"] = time.time()
            self.journal.phase("remove")
        done = self.journal.rollbacks
        try:
            await asyncio.wait_for(self.toxiproxy.reset(), 10)
            if self.journal.fault and not done:
                done.append(_step("POST /reset (toxics removed, proxies enabled)"))
        except Exception as e:  # report it; the rest must still run
            done.append(_step("POST /reset", e))
        for name in list(self._paused):
            try:
                self.stack.signal(name, signal.SIGCONT)
                done.append(_step(f"SIGCONT {name}"))
            except Exception as e:  # as above
                done.append(_step(f"SIGCONT {name}", e))
            self._paused.remove(name)
        for name, old_pid in list(self._killed.items()):

            def restarted(name: str = name, old_pid: int = old_pid) -> bool:
                return self.stack.alive(name) and self.stack.pid(name) != old_pid

            ok = await self._poll(restarted, 60)
            done.append(
                _step(f"{name} restarted by the supervisor", None if ok else "not within 60 s")
            )
            del self._killed[name]

    async def _recover(self) -> None:
        self.journal.phase("recover")
        self._phase = "recover"
        removed = self.journal.fault.get("end") or time.time()
        deadline = time.monotonic() + self._seconds(self.drill.recovery_seconds)
        window = min(RECOVERY_WINDOW_SECONDS, self._seconds(self.drill.recovery_seconds))
        await self._wait(min(window, self._seconds(self.drill.recovery_seconds)))
        while True:
            if await self._judge("after", window, record=False):
                self.journal.time_to_recover = round(time.time() - removed, 1)
                await self._judge("after", window)
                await self._until_expected_alerts_clear(removed)
                return
            if time.monotonic() >= deadline:
                await self._judge("after", window)
                self.journal.problems.append(
                    f"the steady state did not return within {self.drill.recovery_seconds:g} s"
                )
                return
            await asyncio.sleep(2.0)  # re-judging cadence

    async def _until_expected_alerts_clear(self, removed: float) -> None:
        """An expected alert that must clear is given its `clears_within_seconds` after
        the fault's removal (the verdict judges it; ending the drill sooner would judge
        an alert that was still allowed to fire)."""
        waits = [
            (_clearing_key(a), removed + self._seconds(a.clears_within_seconds))
            for a in self.drill.alerts.expected
            if a.clears_within_seconds is not None
        ]
        for name, by in waits:

            def settled(name: str = name) -> bool:  # cleared, or never fired (then missed)
                fired = self.alerts.fired_after(name, 0) is not None
                return not fired or self.alerts.cleared_at(name) is not None

            await self._poll(settled, max(0.0, by - time.time()))

    # -- probes, timeline, accounting ------------------------------------------------

    async def _judge(self, phase: Phase, window: float, record: bool = True) -> bool:
        assert self.watch is not None
        probes = []
        for probe in self.drill.hypothesis:
            if phase not in probe.phases:
                continue
            value = await self.watch.probe(probe, window)
            met = probe.tolerance.holds(value)
            probes.append(
                {
                    "name": probe.name,
                    "kind": probe.kind,
                    "value": None if value is None else round(value, 6),
                    "tolerance": probe.tolerance.model_dump(exclude_none=True),
                    "met": met,
                    **({"fault_effect": True} if probe.fault_effect else {}),
                }
            )
        met = all(p["met"] for p in probes)
        if record:
            self.journal.steady[phase] = {"met": met, "probes": probes, "at": time.time()}
        return met

    async def _sample_forever(self) -> None:
        assert self.watch is not None
        while True:
            started = time.monotonic()
            try:
                values = await self.watch.sample()
                self.alerts.seen(await self.watch.firing())
            except Exception:  # a missed sample is a gap, not a failure
                values = {}
            now = time.time()
            self.journal.timeline_t.append(round(now, 2))
            for name, value in values.items():
                series = self.journal.timeline.setdefault(name, [])
                series.extend([None] * (len(self.journal.timeline_t) - 1 - len(series)))
                series.append(value)
            self.progress(self._phase, now - self.journal.start, values)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

    async def _account(self) -> accounting.Count:
        if self.load is None:
            return accounting.Count(incomplete=["no load ran"])
        return await accounting.settle(
            self.stack.gateway,
            self.stack.redis_url_as("operator"),
            self.load.accounts,
            within=self.drill.accounting.settle_seconds,
            archived=self._archived,
            lost_by_design=self._lost_by_design,
        )

    # -- verdict ---------------------------------------------------------------------

    def _verdict(self, counted: accounting.Count) -> dict[str, Any]:
        j, drill = self.journal, self.drill
        if j.phases and j.phases[-1]["end"] is None:
            j.phases[-1]["end"] = time.time()
        fault_start, fault_end = j.fault.get("start"), j.fault.get("end")
        expected: list[dict[str, Any]] = []
        for alert in drill.alerts.expected:
            fired = self.alerts.fired_after(alert.name, fault_start) if fault_start else None
            met = fired is not None and fired <= alert.within_seconds
            cleared: float | None = None
            if alert.clears_within_seconds is not None:
                # Still firing at the end of the drill, or cleared too late: not met.
                at = self.alerts.cleared_at(_clearing_key(alert))
                cleared = round(at - fault_end, 1) if at is not None and fault_end else None
                met = met and cleared is not None and cleared <= alert.clears_within_seconds
            expected.append(
                {
                    "name": alert.name,
                    "within_seconds": alert.within_seconds,
                    "fired_after": fired,
                    "clears_within_seconds": alert.clears_within_seconds,
                    "cleared_after_removal": cleared,
                    "met": met,
                }
            )
        periods = self.alerts.close()
        seen = {p["name"] for p in periods}
        forbidden = [
            {"name": glob, "which": sorted(n for n in seen if fnmatch.fnmatchcase(n, glob))}
            for glob in drill.alerts.forbidden
        ]
        named = {a.name for a in drill.alerts.expected} | set(drill.alerts.allowed)
        unexpected = sorted(
            n
            for n in seen
            if n not in named and not any(fnmatch.fnmatchcase(n, g) for g in drill.alerts.forbidden)
        )
        deviated = any(not s["met"] for s in j.steady.values()) or "after" not in j.steady
        problems = list(j.problems)
        for a in expected:
            if a["met"]:
                continue
            if a["fired_after"] is None or a["fired_after"] > a["within_seconds"]:
                problems.append(f"{a['name']} did not fire within {a['within_seconds']:g} s")
            else:
                problems.append(
                    f"{a['name']} did not clear within {a['clears_within_seconds']:g} s "
                    "of the fault's removal"
                )
        for f in forbidden:
            if f["which"]:
                problems.append(f"forbidden alert fired: {', '.join(f['which'])}")
        if not counted.exact:
            incomplete = "; ".join(counted.incomplete)[:300]
            problems.append(
                f"event accounting: {counted.lost} lost, {counted.duplicated} duplicated"
                + (f", incomplete: {incomplete}" if incomplete else "")
            )
        trimmed = j.fault.get("trimmed")
        if trimmed and counted.lost_by_design != len(trimmed["lost_by_design"]):
            problems.append(
                f"event accounting: {counted.lost_by_design} events' XP missing, "
                f"the trim took {len(trimmed['lost_by_design'])} from {trimmed['pending_for']}"
            )
        for r in j.rollbacks:
            if r["status"] != "succeeded":
                problems.append(f"rollback {r['activity']}: {r['status']}")
        status = "aborted" if j.abort else "failed" if deviated or problems else "passed"
        detect = [float(a["fired_after"]) for a in expected if a["fired_after"] is not None]
        return {
            "drill": drill.id,
            "title": drill.title,
            "description": drill.description,
            "run_id": self.run_id,
            "status": status,
            "deviated": deviated,
            "problems": problems,
            "without_defence": j.without_defence,
            "defence": {
                "name": drill.defence.name,
                "setting": " ".join(f"{k}={v}" for k, v in drill.defence.disable.items()),
            },
            "start": j.start,
            "end": time.time(),
            "phases": j.phases,
            "fault": j.fault,
            "steady_states": {p: j.steady.get(p) for p in ("before", "during", "after")},
            "run": j.run,
            "rollbacks": j.rollbacks,
            "alerts": {
                "expected": expected,
                "forbidden": [
                    {"name": f["name"], "fired": bool(f["which"]), "which": f["which"]}
                    for f in forbidden
                ],
                "unexpected": unexpected,
                "periods": periods,
            },
            "abort": j.abort,
            "time_to_detect": min(detect) if detect else None,
            "time_to_recover": j.time_to_recover,
            "accounting": counted.to_json(),
            "load": {"rate": drill.load.rate, "users": drill.load.users, **self._load_stats},
            "timeline": {"t": j.timeline_t, "series": j.timeline, "alerts_firing": periods},
        }

    # -- helpers ---------------------------------------------------------------------

    def _seconds(self, seconds: float) -> float:
        return max(1.0, seconds * self.scale)

    @staticmethod
    def _blast(names: list[str], share: float) -> list[str]:
        """The first ceil(share x n) of the matched names: the blast radius."""
        return names[: max(1, math.ceil(share * len(names)))]

    async def _wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)  # a phase's length, by design: not a synchronisation

    @staticmethod
    async def _poll(check: Callable[[], bool], within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if check():
                    return True
            await asyncio.sleep(0.25)
        return False


async def run_with_signals(task: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """Runs the drill; SIGINT and SIGTERM cancel it, so its rollback runs and the
    journal still says what happened."""
    loop = asyncio.get_running_loop()
    future = asyncio.ensure_future(task)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, future.cancel)
    try:
        return await future
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


__all__ = ["DrillRun", "run_with_signals"]
