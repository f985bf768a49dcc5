"""The two directions of a proxied connection, named as Toxiproxy names them."""

from __future__ import annotations

import enum

from chaos.faultproxy.errors import InvalidStream


class Direction(enum.IntEnum):
    """`upstream` is client -> server, `downstream` is server -> client."""

    UPSTREAM = 0
    DOWNSTREAM = 1

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Direction:
        """`"upstream"` / `"downstream"` (any case, as Toxiproxy accepts) or `InvalidStream`."""
        try:
            return cls[value.upper()]
        except KeyError:
            raise InvalidStream() from None
