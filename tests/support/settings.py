"""Kernel settings that make integration tests fast (short blocks, reaper and TTLs)."""

from __future__ import annotations

from backbone.config import BusSettings, RegistrySettings

FAST_BUS = BusSettings(block_ms=50, claim_idle_ms=500, reaper_interval_ms=100)
FAST_REGISTRY = RegistrySettings(heartbeat_seconds=0.2, ttl_seconds=0.6, poll_seconds=0.1)
