"""Discovery: a local, always-answerable view of the live instances.

    watcher ── every poll_seconds ──> Redis: TIME · services set · indexes · MGET records
       │                                 (verify each record's HMAC, drop expired)
       └──> view (dict in memory) <── instances(service)   hot path: no I/O

If Redis cannot be read, the view keeps its last known content, `stale` turns
True and `astra_registry_cache_stale` reads 1, until a refresh succeeds again.
Between refreshes, an instance whose record has expired (its index score is the
expiry in Redis server time, mapped to the local monotonic clock) is hidden; a
stale view stops that clock at the first failed refresh, and the first view
read after an outage keeps the instances Redis forgot for one more TTL (time
for them to beat again), so an outage of the registry never empties the routing
table by itself. `RegistrySettings.stale_cache=False` (`ASTRA_REGISTRY__STALE_CACHE=false`,
a drill's `--without-defence`) turns that off: a failed refresh empties the view.

Expired is not deregistered. A graceful shutdown deletes its record (and index
member): the next refresh finds it gone before its expiry, and it is gone at
once. A record that expired instead (the instance missed its heartbeats) may
belong to an instance that lost only its own path to Redis and still does its
job: trading without Redis still takes orders, its outbox holds the events
(chaos drill 5). Discovery cannot tell that from a crash, so it does not route
to it itself: `instances()` stays "live records only". It keeps such an instance
as *lapsed* for `expired_grace_seconds` after its expiry (only one that was
ready; draining ones are leaving), and `lapsed(service)` lists them for a
caller with evidence of its own. The gateway routes to lapsed instances beside
the live ones and calls `drop()` on the first attempt that fails (connection
error, timeout, 5xx): a crashed instance costs one failed (retried) request,
one that only lost Redis keeps serving until it beats again (then it is live)
or the grace ends (then it is gone: nobody may be routed to forever on the
strength of having once been registered). `astra_registry_instances_lapsed`
counts them by service. Grace 0: an expired record is gone at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError

from backbone import keys
from backbone._text import text
from backbone.config import RegistrySettings
from backbone.errors import RegistryError
from backbone.redis_pool import is_cluster
from backbone.registry._record import HostPolicy, RecordRejected, RejectReason, decode_record
from backbone.registry.metrics import registry_metrics
from backbone.registry.models import NAME_PATTERN, STATUSES, InstanceInfo

log = logging.getLogger(__name__)

View = Mapping[str, tuple[InstanceInfo, ...]]
Listener = Callable[[View], Awaitable[None] | None]

_NAME_RE = re.compile(NAME_PATTERN)


@cache
def _lapsed_gauge(registry: CollectorRegistry) -> Gauge:
    """`astra_registry_instances_lapsed`, once per collector registry."""
    return Gauge(
        "astra_registry_instances_lapsed",
        "Instances whose record expired (not deregistered) within the grace, kept "
        "for callers' passive health (the gateway routes to them until one fails).",
        ["service"],
        registry=registry,
    )


@dataclass(frozen=True, slots=True)
class _Entry:
    info: InstanceInfo
    deadline: float  # local monotonic time at which its record expires in Redis


@dataclass(frozen=True, slots=True)
class _ServiceView:
    entries: tuple[_Entry, ...]  # every status, ordered by instance_id
    ready: tuple[InstanceInfo, ...]
    first_ready_deadline: float  # until then `ready` needs no filtering

    @classmethod
    def of(cls, entries: Iterable[_Entry]) -> _ServiceView:
        ordered = tuple(sorted(entries, key=lambda e: e.info.instance_id))
        ready = tuple(e for e in ordered if e.info.ready)
        return cls(
            ordered,
            tuple(e.info for e in ready),
            min((e.deadline for e in ready), default=math.inf),
        )


class Discovery:
    """A cached, self-refreshing view of the registered instances.

    discovery = Discovery(redis, settings, services=["trading", "users"])
    await discovery.start()              # never fails on Redis: starts empty and stale
    discovery.add_listener(on_change)    # optional: called with all_instances() on change
    for instance in discovery.instances("trading"):   # ready only, no I/O
        ...
    await discovery.aclose()

    `services=None` follows every service in the registry's services set (what a
    Prometheus HTTP service-discovery endpoint wants). Only records signed with
    `settings.token` whose URL is http(s) to one of `settings.allowed_hosts` are
    believed; the rest are counted in `astra_registry_rejected_records_total`. The
    Redis client is borrowed, not owned; give it short socket timeouts if outages
    must show within `poll_seconds`.
    """

    def __init__(
        self,
        redis: Redis,
        settings: RegistrySettings,
        *,
        services: Iterable[str] | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._redis = redis
        self._cluster = is_cluster(redis)  # TIME goes outside the pipeline there
        self._settings = settings
        self._services = None if services is None else tuple(dict.fromkeys(services))
        for service in self._services or ():
            if not _NAME_RE.fullmatch(service):
                raise RegistryError(f"{service!r} is not a valid service name")
        self._metrics = registry_metrics(registry)
        self._hosts = HostPolicy(settings.allowed_hosts)
        # Beyond half a TTL a refresh can no longer show a crash within one TTL: give up.
        self._timeout = settings.ttl_seconds / 2
        self._view: dict[str, _ServiceView] = {}
        self._stale = True  # nothing read yet
        self._frozen_at = math.inf  # local time the view stopped being refreshed
        self._last_success: float | None = None
        self._rejected: set[tuple[str, RejectReason]] = set()
        self._gauge_services: set[str] = set()
        self._listeners: list[Listener] = []
        self._carried: dict[str, dict[str, _Entry]] = {}  # see _carry_over
        # Expired, not deregistered, within the grace (deadline: their expiry); see lapsed().
        self._lapsed: dict[str, dict[str, _Entry]] = {}
        self._dropped: set[tuple[str, str]] = set()  # lapsed ones a caller gave up on
        # Following every service (`services=None`): the names the services index listed
        # live at the latest read. A name drops out of it only by expiring (a
        # deregistration removes the instance, never the name), see _note_lapses.
        self._listed_services: set[str] | None = None
        self._lapsed_gauge = _lapsed_gauge(registry)
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._metrics.cache_stale.set(1)

    def __repr__(self) -> str:
        counts = " ".join(f"{s}={len(v.ready)}/{len(v.entries)}" for s, v in self._view.items())
        return f"<Discovery stale={self._stale} ready/all: {counts or '-'}>"

    # --- the hot path: memory only ------------------------------------------

    def instances(self, service: str) -> tuple[InstanceInfo, ...]:
        """The live, ready instances of `service` as last seen (ordered by instance_id)."""
        view = self._view.get(service)
        if view is None:
            return ()
        now = min(time.monotonic(), self._frozen_at)
        if now <= view.first_ready_deadline:
            return view.ready
        return tuple(e.info for e in view.entries if e.info.ready and now <= e.deadline)

    def lapsed(self, service: str) -> tuple[InstanceInfo, ...]:
        """Ready instances of `service` whose record expired (not deleted) less than
        `expired_grace_seconds` ago and that nobody `drop()`ped: route to them only
        on evidence of your own that they still work."""
        grace = self._settings.expired_grace_seconds
        if grace <= 0:
            return ()
        now = min(time.monotonic(), self._frozen_at)
        found: list[InstanceInfo] = []
        view = self._view.get(service)
        if view is not None and now > view.first_ready_deadline:  # expired since the refresh
            found += [
                e.info
                for e in view.entries
                if e.info.ready
                and e.deadline < now <= e.deadline + grace
                and (service, e.info.instance_id) not in self._dropped
            ]
        found += [
            e.info for e in self._lapsed.get(service, {}).values() if now <= e.deadline + grace
        ]
        return tuple(found)

    def drop(self, service: str, instance_id: str) -> bool:
        """End the grace of a lapsed instance now (the caller saw it fail). True if it was
        lapsed; a live instance is not touched (its record says it is alive)."""
        if not any(i.instance_id == instance_id for i in self.lapsed(service)):
            return False
        self._lapsed.get(service, {}).pop(instance_id, None)
        self._dropped.add((service, instance_id))
        self._lapsed_gauge.labels(service).set(len(self.lapsed(service)))
        log.warning("registry: dropped lapsed instance %s/%s", service, instance_id)
        return True

    def all_lapsed(self) -> dict[str, tuple[InstanceInfo, ...]]:
        """`lapsed(service)` of every service that has any (for the scrape targets)."""
        found = {service: self.lapsed(service) for service in {*self._view, *self._lapsed}}
        return {service: infos for service, infos in found.items() if infos}

    def all_instances(self) -> dict[str, tuple[InstanceInfo, ...]]:
        """Every live instance whatever its status, by service (for operator views)."""
        now = min(time.monotonic(), self._frozen_at)
        return {
            service: tuple(e.info for e in view.entries if now <= e.deadline)
            for service, view in self._view.items()
        }

    @property
    def stale(self) -> bool:
        """True until the first refresh succeeds, and whenever the latest one failed."""
        return self._stale

    @property
    def last_refresh_age(self) -> float:
        """Seconds since the view was last read from Redis (inf if never)."""
        if self._last_success is None:
            return math.inf
        return time.monotonic() - self._last_success

    def add_listener(self, callback: Listener) -> None:
        """Call `callback(all_instances())` after each refresh that changes the view.

        Runs in the watcher task (awaited if it returns an awaitable): keep it quick.
        Its errors are logged and never stop the watcher. Only refreshes notify: an
        expiry between two refreshes is applied by `instances()` on its own.
        """
        self._listeners.append(callback)

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Read the view once (tolerating a Redis outage), then keep it fresh."""
        if self._closed:
            raise RegistryError(f"{self!r} is closed")
        if self._task is not None:
            return
        try:
            await self.refresh()
        except RegistryError as e:
            log.warning("registry: discovery starts with an empty, stale view: %s", e)
        self._task = asyncio.create_task(self._watch(), name="registry-discovery")

    async def aclose(self) -> None:
        """Stop refreshing; the last view stays readable. Idempotent."""
        self._closed = True
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            # The watcher only reads, so interrupting a refresh is harmless. But on
            # Python 3.11 redis-py can lose a cancellation (its send path uses
            # `asyncio.wait_for`, which drops a cancel racing a completed write), so
            # the watcher also stops on `_stop`, within one refresh timeout.
            task.cancel()
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                log.error("registry: discovery watcher failed", exc_info=task.exception())

    async def _watch(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.poll_seconds):
                    await self._stop.wait()
            if self._stop.is_set():
                return
            # refresh() logs and counts failures; the last view keeps being served.
            with contextlib.suppress(RegistryError):
                await self.refresh()

    # --- refreshing -----------------------------------------------------------

    async def refresh(self) -> None:
        """Read the view from Redis now; `RegistryError` (view kept, marked stale) if not."""
        async with self._lock:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self._timeout):
                    view, rejected = await self._read(started)
            except (RedisError, OSError, TimeoutError) as e:
                self._mark_stale(started, e)
                raise RegistryError(f"discovery refresh failed: {e!r}") from e
            except Exception as e:  # a bug or an unexpected reply: still a view not refreshed
                log.exception("registry: unexpected error refreshing discovery")
                self._mark_stale(started, e)
                raise RegistryError(f"discovery refresh failed: {e!r}") from e
            self._note_rejected(rejected)
            changed = self._install(view)
        if changed:
            await self._notify()

    async def _read(
        self, started: float
    ) -> tuple[dict[str, _ServiceView], list[tuple[str, str, RecordRejected]]]:
        pipe = self._redis.pipeline(transaction=False)
        if self._cluster:
            # A cluster pipeline routes by key and TIME has none: asked on its own, of
            # any node (expiries are that node's clock: keep the nodes' clocks in sync).
            pipe_time = await self._redis.time()
        else:
            pipe.time()
        if self._services is None:
            pipe.zrange(keys.REGISTRY_SERVICES, 0, -1, withscores=True)
        else:
            for service in self._services:
                pipe.zrange(keys.registry_index(service), 0, -1, withscores=True)
        replies: list[Any] = await pipe.execute()
        if self._cluster:
            replies.insert(0, pipe_time)
        seconds, micros = replies[0]
        now_ms = int(seconds) * 1000 + int(micros) // 1000

        if self._services is None:
            services = [
                name
                for name, score in ((text(m), s) for m, s in replies[1])
                if score >= now_ms and _NAME_RE.fullmatch(name)
            ]
            self._listed_services = set(services)
            pipe = self._redis.pipeline(transaction=False)
            for service in services:
                pipe.zrange(keys.registry_index(service), 0, -1, withscores=True)
            indexes: list[Any] = await pipe.execute() if services else []
        else:
            services = list(self._services)
            indexes = replies[1:]

        # Members whose score is past have expired (or are about to be pruned).
        live: dict[str, list[tuple[str, float]]] = {
            service: [(text(m), s) for m, s in members if s >= now_ms]
            for service, members in zip(services, indexes, strict=True)
        }
        wanted = [service for service, members in live.items() if members]
        records: list[Any] = []
        if wanted:
            pipe = self._redis.pipeline(transaction=False)
            for service in wanted:  # one MGET per service: its keys share a slot
                # (execute_command: the cluster pipeline refuses `mget()` by name, even
                # for keys of one slot; sent this way it routes by their slot.)
                instance_keys = [keys.registry_instance(service, i) for i, _ in live[service]]
                pipe.execute_command("MGET", *instance_keys)
            records = await pipe.execute()

        view: dict[str, _ServiceView] = {}
        if self._services is not None:
            view = {service: _ServiceView.of(()) for service in self._services}
        rejected: list[tuple[str, str, RecordRejected]] = []
        token = self._settings.token
        for service, raws in zip(wanted, records, strict=True):
            entries: list[_Entry] = []
            for (instance_id, score), raw in zip(live[service], raws, strict=True):
                if raw is None:
                    continue  # expired since TIME was read
                try:
                    info = decode_record(
                        raw, token, service=service, instance_id=instance_id, hosts=self._hosts
                    )
                except RecordRejected as e:
                    rejected.append((service, instance_id, e))
                    continue
                entries.append(_Entry(info, started + (score - now_ms) / 1000))
            if entries or self._services is not None:
                view[service] = _ServiceView.of(entries)
        return view, rejected

    def _install(self, view: dict[str, _ServiceView]) -> bool:
        recovering = self._stale and self._last_success is not None
        self._note_lapses(view, recovering=recovering)
        view = self._carry_over(view, recovering=recovering)
        before = {s: tuple(e.info for e in v.entries) for s, v in self._view.items()}
        after = {s: tuple(e.info for e in v.entries) for s, v in view.items()}
        self._view = view
        self._last_success = time.monotonic()
        self._frozen_at = math.inf
        if self._stale:
            log.info("registry: discovery view is fresh (%s)", self._summary())
        self._stale = False
        self._metrics.cache_stale.set(0)
        for service, service_view in view.items():
            for status in STATUSES:
                count = sum(1 for e in service_view.entries if e.info.status == status)
                self._metrics.instances.labels(service, status).set(count)
        for service in self._gauge_services - view.keys():
            for status in STATUSES:
                self._metrics.instances.remove(service, status)
        self._gauge_services = set(view)
        return before != after

    def _carry_over(
        self, view: dict[str, _ServiceView], *, recovering: bool
    ) -> dict[str, _ServiceView]:
        """Keep, for one more TTL, the instances an outage made Redis forget.

        After an outage longer than a TTL, or a restart that lost the data, Redis
        lists nobody until each instance's next heartbeat lands; dropping them all
        in the meantime would turn a registry outage into an outage of every
        service. So the first view read after an outage keeps the instances that
        were live when the outage began until Redis lists them again or one TTL
        (two heartbeats) passes: a dead one is then gone, the usual bound.
        """
        now = time.monotonic()
        if recovering:
            deadline = now + self._settings.ttl_seconds
            for service, old in self._view.items():
                for entry in old.entries:
                    if entry.deadline >= self._frozen_at:  # live when the outage began
                        carried = self._carried.setdefault(service, {})
                        carried[entry.info.instance_id] = _Entry(entry.info, deadline)
        merged = dict(view)
        for service, carried in list(self._carried.items()):
            new = view.get(service)
            listed = {e.info.instance_id for e in new.entries} if new else set()
            keep = {i: e for i, e in carried.items() if i not in listed and e.deadline >= now}
            if keep:
                self._carried[service] = keep
                merged[service] = _ServiceView.of([*(new.entries if new else ()), *keep.values()])
            else:
                del self._carried[service]
        return merged

    def _note_lapses(self, view: dict[str, _ServiceView], *, recovering: bool) -> None:
        """Which instances Redis no longer lists expired (lapsed) rather than left.

        An entry of the view that Redis stopped listing was deleted if its expiry is
        still ahead (deregistration), and expired if it is past: the local deadline is
        never later than Redis's expiry (it is mapped from a TIME read after the
        request started), so a record Redis let expire always reads as past here.
        After an outage, `_carry_over` keeps the forgotten ones instead.
        """
        now = time.monotonic()
        grace = self._settings.expired_grace_seconds
        lapsed: dict[str, dict[str, _Entry]] = {}
        for service in {*self._view, *self._lapsed}:
            new = view.get(service)
            listed = {e.info.instance_id for e in new.entries} if new else set()
            # The service's own entry in the services index expired: all of it did, even
            # an instance whose record is still ahead locally (found: a partition that
            # loses only Redis's replies lets one blind instance beat land without the
            # service beat that follows it; the name expired first, and the instance
            # read as deregistered, so Prometheus stopped scraping it).
            name_expired = (
                self._listed_services is not None and service not in self._listed_services
            )
            keep = {
                i: e
                for i, e in self._lapsed.get(service, {}).items()
                if i not in listed and now <= e.deadline + grace
            }
            old = self._view.get(service)
            if not recovering and old is not None and grace > 0:
                carried = self._carried.get(service, {})
                for entry in old.entries:
                    instance_id = entry.info.instance_id
                    if (
                        instance_id in listed
                        or instance_id in carried  # had its extra TTL already
                        or (service, instance_id) in self._dropped
                        or not entry.info.ready
                    ):
                        continue
                    if (entry.deadline <= now or name_expired) and now <= entry.deadline + grace:
                        if instance_id not in keep:
                            log.warning(
                                "registry: %s/%s missed its heartbeats; lapsed for %.0fs",
                                service,
                                instance_id,
                                entry.deadline + grace - now,
                            )
                        keep[instance_id] = entry
            if keep:
                lapsed[service] = keep
        for service in {*self._lapsed, *lapsed}:
            self._lapsed_gauge.labels(service).set(len(lapsed.get(service, {})))
        self._lapsed = lapsed
        self._dropped.clear()  # each is listed again (alive) or gone for good now

    def _mark_stale(self, started: float, error: BaseException) -> None:
        self._metrics.refresh_failures.inc()
        self._metrics.cache_stale.set(1)
        if not self._settings.stale_cache:
            self._forget_all(error)
            self._stale = True
            return
        if not self._stale:
            self._frozen_at = started
            log.warning(
                "registry: discovery refresh failed, serving the view of %.1fs ago: %r",
                self.last_refresh_age,
                error,
            )
        else:
            log.debug("registry: discovery refresh failed again: %r", error)
        self._stale = True

    def _forget_all(self, error: BaseException) -> None:
        """The stale cache switched off: an unreadable registry is an empty one."""
        if any(v.entries for v in self._view.values()) or self._lapsed or self._carried:
            log.warning(
                "registry: discovery refresh failed and the stale cache is off: "
                "forgetting every instance: %r",
                error,
            )
        self._view = {service: _ServiceView.of(()) for service in self._view}
        self._carried.clear()
        self._lapsed.clear()
        self._dropped.clear()
        for service in self._gauge_services:
            for status in STATUSES:
                self._metrics.instances.labels(service, status).set(0)
            self._lapsed_gauge.labels(service).set(0)

    def _note_rejected(self, rejected: list[tuple[str, str, RecordRejected]]) -> None:
        seen: set[tuple[str, RejectReason]] = set()
        for service, instance_id, e in rejected:
            self._metrics.rejected_records.labels(e.reason).inc()
            key = keys.registry_instance(service, instance_id)
            seen.add((key, e.reason))
            if (key, e.reason) not in self._rejected:  # log each bad record once, not per poll
                log.warning("registry: ignoring record %s: %s", key, e)
        self._rejected = seen

    def _summary(self) -> str:
        return ", ".join(f"{s}: {len(v.ready)} ready" for s, v in self._view.items()) or "empty"

    async def _notify(self) -> None:
        view = self.all_instances()
        for listener in list(self._listeners):
            try:
                result = listener(view)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("registry: discovery listener %r failed", listener)
