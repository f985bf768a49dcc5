"""Registration: one instance keeps its signed record alive with a heartbeat.

    beat ─┬─ script, slot {service}:  SET record PX ttl · ZADD index expiry id
          │                           · prune index members already expired
          │                           · PEXPIREAT index to its latest expiry
          └─ script, own slot:        ZADD GT services expiry service · prune expired
                                      · PEXPIREAT services to its latest expiry

Every expiry is Redis server time (`TIME` inside the scripts), so host clocks
never matter, and every key the registry writes carries an expiry: the record
(PX), the index and the services set (PEXPIREAT to their latest member's expiry,
so neither can outlive, nor die before, the instances it lists). Pruning removes
only members whose expiry is already past, so no instance ever deletes another
live one; deregistration deletes only its own record and index member.

Because each beat rewrites the whole record (not just its TTL), a Redis that
restarted empty has the instance back at the next beat. Needs Redis >= 6.2
(`ZADD ... GT`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import REGISTRY, CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import RedisError

from backbone import keys
from backbone.config import RegistrySettings
from backbone.errors import RegistryError
from backbone.registry._record import HostPolicy, RecordRejected, encode_record
from backbone.registry.metrics import registry_metrics
from backbone.registry.models import InstanceInfo, Status

log = logging.getLogger(__name__)

# Milliseconds of Redis server time; `%d` keeps 13-digit scores exact in Lua 5.1.
_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: record, index. ARGV: instance_id, signed record, ttl (ms). Returns the expiry (ms).
_BEAT_INSTANCE = (
    _NOW_MS
    + """
local expiry = now + tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], string.format('%d', expiry), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%d', now))
local latest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], latest[2])
return expiry
"""
)

# KEYS: services set. ARGV: service, ttl (ms). GT: a short-TTL instance never shortens
# the entry of a service whose other instances beat with a longer TTL.
_BEAT_SERVICE = (
    _NOW_MS
    + """
local expiry = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'GT', string.format('%d', expiry), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%d', now))
local latest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], latest[2])
return expiry
"""
)


class Registrar:
    """Registers one instance for as long as the process runs.

    registrar = Registrar(redis, InstanceInfo(service="trading", url=url, version=v), settings)
    await registrar.start()               # first beat; RegistryError if Redis refuses it
    await registrar.set_status("ready")   # discovery routes to it from its next refresh
    ...
    await registrar.set_status("draining")
    await registrar.aclose()              # deregisters; a crash instead expires within one TTL

    The Redis client is borrowed, not owned: the caller closes it after `aclose()`.
    Records are signed with `settings.token` (HMAC-SHA256), so discovery ignores
    anything written without it. The token stops forgery, not vandalism: a client
    that can write the keys can still delete records or replay old signed ones.
    A Redis ACL closes that by restricting writes to the registrars (Redis 7 checks
    the commands a script runs against the caller's user), per service if wanted
    (`~astra:registry:{trading}:*`):

        ACL SETUSER registrar on >... resetkeys ~astra:registry:* resetchannels -@all
            +evalsha +eval +script|load +time +set +zadd +zrange +zremrangebyscore
            +pexpireat +del +zrem +multi +exec
        ACL SETUSER discovery on >... resetkeys %R~astra:registry:* resetchannels -@all
            +time +zrange +mget
    """

    def __init__(
        self,
        redis: Redis,
        info: InstanceInfo,
        settings: RegistrySettings,
        *,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._redis = redis
        self._info = info
        self._settings = settings
        self._metrics = registry_metrics(registry)
        self._ttl_ms = max(1, round(settings.ttl_seconds * 1000))
        self._record_key = keys.registry_instance(info.service, info.instance_id)
        self._index_key = keys.registry_index(info.service)
        try:
            HostPolicy(settings.allowed_hosts).check(info.url)
        except RecordRejected as e:
            # Registering anyway keeps one mistake from stopping the process; the
            # warning says why nobody will ever route to it.
            log.warning(
                "registry: discovery will ignore %s/%s (%s); add its host to allowed_hosts",
                info.service,
                info.instance_id,
                e.detail,
            )
        self._beat_instance = redis.register_script(_BEAT_INSTANCE)
        self._beat_service = redis.register_script(_BEAT_SERVICE)
        self._lock = asyncio.Lock()  # one beat at a time: a stale status never lands last
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._deregistered = False
        self.beats = 0
        self.failures = 0  # consecutive failed beats
        self.expires_at_ms: int | None = None  # server time of the record's expiry

    @property
    def info(self) -> InstanceInfo:
        return self._info

    def __repr__(self) -> str:
        return (
            f"<Registrar service={self._info.service} instance={self._info.instance_id}"
            f" status={self._info.status} beats={self.beats} failures={self.failures}>"
        )

    async def start(self) -> None:
        """Register now (raising `RegistryError` if Redis refuses), then keep beating."""
        if self._closed:
            raise RegistryError(f"{self!r} is closed")
        if self._task is not None:
            return
        try:
            await self._beat()
        except (RedisError, OSError, TimeoutError) as e:
            raise RegistryError(f"could not register {self._info.service}: {e!r}") from e
        self._task = asyncio.create_task(
            self._run(), name=f"registry-heartbeat-{self._info.service}"
        )

    async def set_status(self, status: Status) -> None:
        """Publish a new status now; later beats keep it even if this write fails."""
        self._info = self._info.model_copy(update={"status": status})
        if self._task is None or self._closed:
            return  # not registered (yet): start() publishes it
        try:
            await self._beat()
        except (RedisError, OSError, TimeoutError) as e:
            self._metrics.heartbeat_failures.labels(self._info.service).inc()
            raise RegistryError(f"could not publish status {status!r}: {e!r}") from e

    async def aclose(self) -> None:
        """Stop beating and deregister (own record and index member only). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self._task is not None:
            # Let an in-flight beat finish rather than cancel it: a cancelled EVALSHA may
            # still reach Redis after our DEL and resurrect the record for one TTL.
            await self._task
        async with self._lock:
            try:
                async with asyncio.timeout(self._settings.heartbeat_seconds):
                    pipe = self._redis.pipeline(transaction=True)
                    pipe.delete(self._record_key)
                    pipe.zrem(self._index_key, self._info.instance_id)
                    await pipe.execute()
            except (RedisError, OSError, TimeoutError) as e:
                # Shutdown must not fail on Redis: the record expires within one TTL anyway.
                log.warning(
                    "registry: could not deregister %s/%s (it expires within %.1fs): %r",
                    self._info.service,
                    self._info.instance_id,
                    self._settings.ttl_seconds,
                    e,
                )
            else:
                log.info("registry: deregistered %s/%s", self._info.service, self._info.instance_id)
            self._deregistered = True

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.heartbeat_seconds):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            try:
                await self._beat()
            except Exception as e:  # the heartbeat must outlive any error, not only Redis ones
                self.failures += 1
                self._metrics.heartbeat_failures.labels(self._info.service).inc()
                # Once per outage, not once per beat (five lines a second at 0.2 s).
                log.log(
                    logging.WARNING if self.failures == 1 else logging.DEBUG,
                    "registry: heartbeat of %s/%s failed (%d in a row), retrying every %.1fs: %r",
                    self._info.service,
                    self._info.instance_id,
                    self.failures,
                    self._settings.heartbeat_seconds,
                    e,
                )
            else:
                if self.failures:
                    # The beat rewrote the whole record: a Redis that came back empty
                    # lists this instance again from now on.
                    log.info(
                        "registry: heartbeat of %s/%s recovered after %d failures (re-registered)",
                        self._info.service,
                        self._info.instance_id,
                        self.failures,
                    )
                    self.failures = 0

    async def _beat(self) -> None:
        async with self._lock:
            if self._deregistered:
                return  # a set_status() racing aclose() must not bring the record back
            info = self._info
            # A beat that takes longer than the interval is abandoned, never queued up.
            async with asyncio.timeout(self._settings.heartbeat_seconds):
                expiry = await self._beat_instance(
                    keys=[self._record_key, self._index_key],
                    args=[
                        info.instance_id,
                        encode_record(info, self._settings.token),
                        self._ttl_ms,
                    ],
                )
                await self._beat_service(
                    keys=[keys.REGISTRY_SERVICES], args=[info.service, self._ttl_ms]
                )
            self.expires_at_ms = int(expiry)
            self.beats += 1
