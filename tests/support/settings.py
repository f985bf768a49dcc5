"""Kernel settings that make integration tests fast (short blocks, reaper and TTLs)."""

from __future__ import annotations

from backbone.config import BusSettings, RegistrySettings

FAST_BUS = BusSettings(block_ms=50, claim_idle_ms=500, reaper_interval_ms=100)
# Secrets of the test stacks: tests make their own, none ships as a default.
TEST_REGISTRY_TOKEN = "registry-token-for-tests-0123456789"
TEST_OPERATOR_TOKEN = "operator-token-for-tests-0123456789"
FAST_REGISTRY = RegistrySettings(
    heartbeat_seconds=0.2, ttl_seconds=0.6, poll_seconds=0.1, token=TEST_REGISTRY_TOKEN
)
