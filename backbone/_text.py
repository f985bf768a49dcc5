"""Redis replies arrive as bytes (clients run with decode_responses=False)."""

from __future__ import annotations


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
