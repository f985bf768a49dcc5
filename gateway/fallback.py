"""Stale-if-error and stale-if-slow: the last good answer to a public GET, served
while its service fails (`X-Astra-Fallback: stale-cache`) or has not answered within
`stale_after_seconds` (`stale-slow`: the call goes on in the background, judges the
breaker and refreshes the copy).

Only anonymous requests are cached (no Authorization, no Cookie) and only answers
that are plainly shareable (200, no Set-Cookie, not private/no-store), so a
fallback can never show one user another's data. A fallback says what it is:
`X-Astra-Fallback` and an `Age` header.

`FallbackSettings.enabled=False` (`ASTRA_FALLBACK__ENABLED=false`) stores and
serves nothing: an upstream error then reaches the client as it is.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.config import FallbackSettings

_PERSONAL_REQUEST = (b"authorization", b"cookie")


@dataclass(frozen=True, slots=True)
class Cached:
    headers: list[tuple[bytes, bytes]]
    body: bytes
    stored_at: float


def cacheable_request(method: str, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return method == "GET" and not any(name in _PERSONAL_REQUEST for name, _ in headers)


def cacheable_answer(status: int, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    if status != 200:
        return False
    for name, value in headers:
        if name == b"set-cookie":
            return False
        if name == b"cache-control" and (b"private" in value or b"no-store" in value):
            return False
    return True


class StaleCache:
    """A bounded LRU of recent good answers, by service and target.

    cache.store(key, headers, body)
    hit = cache.lookup(key)      # (Cached, age seconds) or None when absent or too old
    """

    def __init__(
        self, settings: FallbackSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._s = settings
        self._clock = clock
        self._entries: OrderedDict[str, Cached] = OrderedDict()

    def store(self, key: str, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        if not self._s.enabled or self._s.max_entries == 0 or len(body) > self._s.max_body_bytes:
            return
        self._entries[key] = Cached(headers, body, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self._s.max_entries:
            self._entries.popitem(last=False)

    def lookup(self, key: str) -> tuple[Cached, float] | None:
        cached = self._entries.get(key) if self._s.enabled else None
        if cached is None:
            return None
        age = self._clock() - cached.stored_at
        if age > self._s.stale_seconds:
            del self._entries[key]
            return None
        return cached, age
