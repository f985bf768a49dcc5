"""Typed settings the kernel's parts take explicitly.

These are plain pydantic models: the kernel never reads the environment itself.
Each deployable owns a pydantic-settings class (env prefix `ASTRA_`) that nests
them, e.g. `backbone.service.config.ServiceSettings`.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StreamRetentionSettings(_Settings):
    """Per-stream trimming; exactly one of the two (see backbone.bus.streams.Retention)."""

    maxlen: int | None = Field(default=100_000, ge=1)
    max_age_seconds: float | None = Field(default=None, gt=0)


class BusSettings(_Settings):
    batch_size: int = Field(default=100, ge=1, le=10_000)  # entries per XREADGROUP
    block_ms: int = Field(default=1000, ge=1)  # XREADGROUP BLOCK; bounds shutdown latency
    claim_idle_ms: int = Field(default=30_000, ge=1)  # reaper claims entries idle this long
    reaper_interval_ms: int = Field(default=5_000, ge=1)
    max_deliveries: int = Field(default=5, ge=1)  # handler failures before the DLQ
    # Idempotency markers must outlive the gap between processing an event and a
    # duplicate of it (an outbox resend lands right behind the original, so both
    # are read close together). Memory: ~200 B x events/s x TTL (1 h at 1k/s: ~0.7 GB).
    processed_ttl_seconds: int = Field(default=3600, ge=1)
    lag_budget_events: int = Field(default=10_000, ge=1)
    lag_budget_seconds: float = Field(default=3600.0, gt=0)
    default_retention: StreamRetentionSettings = StreamRetentionSettings()
    retention: dict[str, StreamRetentionSettings] = Field(default_factory=dict)  # by stream
    metrics_sample_interval_ms: int = Field(default=5_000, ge=100)  # XINFO/XPENDING sampling
    # Replicas that must hold a published event before it counts as published (WAIT n):
    # the outbox marks a row sent only then, a direct publish says how many held it.
    # None: 1 when Redis runs under Sentinel or as a cluster (ASTRA_REDIS_SENTINELS,
    # ASTRA_REDIS_CLUSTER: replicas exist), else 0. Replication is asynchronous: without
    # it a failover can lose an event Redis acknowledged, with it the event is on the
    # replica that is promoted. On a cluster each shard's primary is asked on its own.
    replica_acks: int | None = Field(default=None, ge=0, le=5)
    replica_ack_timeout_ms: int = Field(default=1000, ge=1)
    # Defence switches: on in every real deployment. A chaos drill run with
    # `--without-defence` turns one off to show that the drill catches its absence.
    # ASTRA_BUS__REAPER_ENABLED=false: pending entries are never delivered again, by
    # anyone. No XAUTOCLAIM of a dead (or failing) peer's idle entries, and no drain of
    # this consumer name's own pending entries at start or after an outage, so a
    # consumer killed mid-batch leaves that batch pending for ever: events lost.
    reaper_enabled: bool = True
    # ASTRA_BUS__IDEMPOTENCY_MARKERS=false: effects are applied without the group's
    # processed-marker check (and no marker is written), so an event delivered twice
    # (an outbox resend, a reclaim after a slow handler) has its effects applied twice.
    idempotency_markers: bool = True


class RegistrySettings(_Settings):
    """How instances register and are discovered.

    `allowed_hosts`: the hosts a record's URL may name; a correctly signed record
    pointing anywhere else is ignored (a leaked token must not let anyone send
    the gateway's traffic, or the JWKS lookup, to a host of their choosing). Each
    entry is an IP address, a CIDR network (`10.0.0.0/8`, `fd00::/8`) or an exact
    host name (`trading`, case-insensitive, no wildcards). Names are compared as
    written, never resolved. From the environment, a JSON list
    (`ASTRA_REGISTRY__ALLOWED_HOSTS='["trading","users","10.0.0.0/8"]'`).
    """

    heartbeat_seconds: float = Field(default=2.0, gt=0)
    ttl_seconds: float = Field(default=6.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0)  # discovery cache refresh
    # Discovery keeps its last view while Redis cannot be read (and marks it stale).
    # Off (`ASTRA_REGISTRY__STALE_CACHE=false`, a drill's `--without-defence`): a failed
    # refresh empties the view, so nothing is routed until Redis answers again.
    stale_cache: bool = True
    # An instance whose record expired (missed heartbeats; not deregistered) stays
    # available as "lapsed" (`Discovery.lapsed`) this long after its expiry, for a
    # caller with its own evidence that it still works (the gateway's passive health).
    # 0: an expired record is gone at once. Seconds.
    expired_grace_seconds: float = Field(default=30.0, ge=0)
    # HMAC key for records. No default: each stack makes its own (`astra up` writes it
    # to <run_dir>/secrets.json); a deployable refuses to start without one.
    token: str = Field(default="", repr=False)
    allowed_hosts: tuple[str, ...] = Field(
        default=("127.0.0.0/8", "::1/128", "localhost"), min_length=1
    )
    # How long a starting process waits for Redis (where it must register before
    # anything routes to it) before giving up; 0 fails at once. Seconds.
    startup_wait_seconds: float = Field(default=30.0, ge=0)

    # RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
    _HOST_NAME: ClassVar[re.Pattern[str]] = re.compile(
        r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _normalise_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Networks in canonical CIDR form (`::1` -> `::1/128`), names lower-cased."""
        out: list[str] = []
        for entry in value:
            item = entry.strip().lower().rstrip(".")
            if "%" in item:  # a zone (fe80::1%eth0) means one host's link, not a network
                raise ValueError(f"allowed_hosts: {entry!r} is not a valid address (zone ids)")
            try:
                out.append(str(ipaddress.ip_network(item, strict=True)))
                continue
            except ValueError as e:
                if "/" in item or item.replace(".", "").isdigit() or ":" in item:
                    raise ValueError(
                        f"allowed_hosts: {entry!r} is not a valid address/CIDR: {e}"
                    ) from e
            if not cls._HOST_NAME.fullmatch(item):
                raise ValueError(
                    f"allowed_hosts: {entry!r} is neither an IP address, a CIDR network "
                    "(10.0.0.0/8) nor a host name (letters, digits, '-' and '.')"
                )
            out.append(item)
        return tuple(dict.fromkeys(out))

    @model_validator(mode="after")
    def _ttl_outlives_heartbeats(self) -> RegistrySettings:
        if self.ttl_seconds < 2 * self.heartbeat_seconds:
            raise ValueError("ttl_seconds must be at least twice heartbeat_seconds")
        return self


class TelemetrySettings(_Settings):
    log_level: str = "INFO"
    log_dir: Path | None = None  # JSON lines per process
    # Also to stderr (a terminal). `astra up` turns it off: its children's stderr
    # goes to a file already, and one copy of every line is enough.
    log_stderr: bool = True
    traces_dir: Path | None = None  # JSON-lines span export when no OTLP endpoint
    otlp_endpoint: str | None = None
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)  # parent-based
    tracing: bool = True


# Values once shipped as defaults: public, so never a secret, in any environment.
_WELL_KNOWN_SECRETS = frozenset({"dev-registry-token", "dev-operator-token"})
MIN_SECRET_LENGTH = 16


def require_secret(variable: str, value: str) -> None:
    """Refuse a missing, short or once-published secret, naming the variable to set.

    For the deployables' settings validators: there is no placeholder that works
    anywhere, so a forgotten secret is a start-up error, not a silent default.
    """
    if not value:
        raise ValueError(f"{variable} is not set (`astra up` generates one per stack)")
    if value in _WELL_KNOWN_SECRETS:
        raise ValueError(f"{variable} is a published placeholder; set a secret of your own")
    if len(value) < MIN_SECRET_LENGTH:
        raise ValueError(f"{variable} must be at least {MIN_SECRET_LENGTH} characters")
