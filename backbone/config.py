"""Typed settings the kernel's parts take explicitly.

These are plain pydantic models: the kernel never reads the environment itself.
Each deployable owns a pydantic-settings class (env prefix `ASTRA_`) that nests
them, e.g. `backbone.service.config.ServiceSettings`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


class RegistrySettings(_Settings):
    heartbeat_seconds: float = Field(default=2.0, gt=0)
    ttl_seconds: float = Field(default=6.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0)  # discovery cache refresh
    token: str = Field(default="dev-registry-token", min_length=8)  # HMAC key for records

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
