"""A cached JWKS: fetched over HTTP, refreshed when an unknown `kid` shows up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import jwt

from backbone.errors import AstraError


class JwksFetchError(AstraError):
    """The key set could not be fetched (verification then fails closed)."""


UrlSource = Callable[[], Awaitable[str] | str]


class JwksCache:
    def __init__(
        self,
        url: str | UrlSource,
        *,
        max_age_seconds: float = 300.0,
        min_refresh_interval: float = 5.0,  # an unknown kid cannot make us hammer the issuer
        timeout: float = 2.0,
    ) -> None:
        self._url = url
        self._max_age = max_age_seconds
        self._min_interval = min_refresh_interval
        self._timeout = timeout
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def _resolve_url(self) -> str:
        if isinstance(self._url, str):
            return self._url
        result = self._url()
        return await result if not isinstance(result, str) else result

    async def get(self, kid: str) -> Any:
        """The public key for `kid`, refreshing the set at most every `min_refresh_interval`."""
        age = time.monotonic() - self._fetched_at
        if kid in self._keys and age < self._max_age:
            return self._keys[kid]
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            stale = kid not in self._keys or age >= self._max_age
            if stale and (age >= self._min_interval or not self._keys):
                await self._refresh()
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        try:
            url = await self._resolve_url()
        except AstraError as e:
            raise JwksFetchError(f"no JWKS location: {e}") from e
        try:
            timeout = aiohttp.ClientTimeout(total=self._timeout)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url) as response,
            ):
                response.raise_for_status()
                document = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise JwksFetchError(f"cannot fetch JWKS from {url}: {e}") from e
        keys: dict[str, Any] = {}
        for jwk in jwt.PyJWKSet.from_dict(document).keys:
            if jwk.key_id:
                keys[jwk.key_id] = jwk.key
        self._keys = keys
        self._fetched_at = time.monotonic()
