"""Chaos tooling: a Toxiproxy-compatible fault proxy and the async client drills use.

`chaos.faultproxy` is the server (`python -m chaos.faultproxy`); `chaos.client` speaks
Toxiproxy's documented HTTP API, so the same drill drives either server.
"""

from __future__ import annotations

__all__ = ["client", "faultproxy"]
