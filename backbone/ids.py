"""Identifiers: time-ordered UUIDv7 strings for events, users and orders."""

from __future__ import annotations

import os
import secrets
import threading
import time


class _Uuid7:
    """Time-ordered UUIDv7 (RFC 9562 method 1: 12-bit counter within the millisecond).

    The counter starts at a random point each millisecond, so ids stay unique
    across processes (62 random bits) and ordered within one. Only past 4,096
    ids in one millisecond does it borrow the next millisecond — unlike a
    generator that bumps the timestamp for every id, which at 100k ids/s stamps
    events seconds into the future.
    """

    __slots__ = ("_lock", "counter", "last_ms")

    def __init__(self) -> None:
        self.last_ms = 0
        self.counter = 0
        # Ids are made on more than one thread (trading's fills run on a writer thread,
        # its request ids on the event loop): the read-modify-write must not interleave.
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms > self.last_ms:
                self.last_ms = ms
                self.counter = secrets.randbits(11)  # half the space left for this ms
            else:
                self.counter += 1
                if self.counter > 0xFFF:
                    self.last_ms += 1
                    self.counter = 0
            last_ms, counter = self.last_ms, self.counter
        rand = int.from_bytes(os.urandom(8)) & 0x3FFF_FFFF_FFFF_FFFF
        value = (last_ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
        h = f"{value:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


uuid7 = _Uuid7()
