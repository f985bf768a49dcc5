"""Prometheus durations, both ways: 5400 <-> "1h30m"."""

from __future__ import annotations

import re

_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(seconds: int) -> str:
    """Prometheus duration: 90061 -> '1d1h1m1s', 0 -> '0s'."""
    if seconds == 0:
        return "0s"
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out


def seconds(text: str) -> int:
    """ "1h30m" -> 5400."""
    return sum(int(n) * _UNIT[u] for n, u in re.findall(r"(\d+)([smhd])", text))
