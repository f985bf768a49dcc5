"""argon2id password hashing off the event loop.

    passwords = Passwords(PasswordHasher(), max_concurrency=4)
    stored = await passwords.hash("correct horse")
    ok, rehash = await passwords.verify(stored, "correct horse")
    await passwords.verify_dummy("guess")   # same cost when the user does not exist

Hashing costs tens of milliseconds of CPU and `memory_kib` of RAM, so it runs in
a worker thread (`asyncio.to_thread`) behind a semaphore: the loop keeps serving
and a login burst cannot exhaust memory or the default thread pool.
"""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    def __init__(self, hasher: PasswordHasher, *, max_concurrency: int) -> None:
        self._hasher = hasher
        self._slots = asyncio.Semaphore(max_concurrency)
        # Verified against when the username is unknown, so that answer takes as long.
        self._dummy = hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str, password: str) -> tuple[bool, bool]:
        """(matches, needs_rehash): a match under outdated parameters asks for a new hash."""
        async with self._slots:
            ok = await asyncio.to_thread(self._check, stored, password)
        return ok, ok and self._hasher.check_needs_rehash(stored)

    async def verify_dummy(self, password: str) -> None:
        async with self._slots:
            await asyncio.to_thread(self._check, self._dummy, password)

    def _check(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
