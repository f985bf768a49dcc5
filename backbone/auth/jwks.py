"""A cached JWKS: fetched over HTTP, refreshed when an unknown `kid` shows up."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import jwt

from backbone.errors import AstraError

log = logging.getLogger("backbone.auth")


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
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _resolve_url(self) -> str:
        if isinstance(self._url, str):
            return self._url
        result = self._url()
        return await result if not isinstance(result, str) else result

    async def get(self, kid: str) -> Any:
        """The public key for `kid`; None when the issuer does not know it.

        Refreshes when the set is older than `max_age` or `kid` is unknown, at most
        once per `min_refresh_interval` (successful or not), so neither unknown kids
        nor an unreachable issuer make every request wait on a fetch. While the
        issuer is unreachable, keys already known keep verifying: an outage of the
        users service must not log everybody out.
        """
        now = time.monotonic()
        if kid in self._keys and now - self._fetched_at < self._max_age:
            return self._keys[kid]
        async with self._lock:
            now = time.monotonic()
            fresh = kid in self._keys and now - self._fetched_at < self._max_age
            if not fresh and (now - self._attempted_at >= self._min_interval or not self._keys):
                self._attempted_at = now
                try:
                    await self._refresh()
                except JwksFetchError:
                    if kid not in self._keys:
                        raise
                    log.warning(
                        "JWKS refresh failed; verifying with the cached key", extra={"kid": kid}
                    )
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
        try:
            for jwk in jwt.PyJWKSet.from_dict(document).keys:
                if jwk.key_id:
                    keys[jwk.key_id] = jwk.key
        except (jwt.PyJWTError, AttributeError, TypeError) as e:
            raise JwksFetchError(f"unusable JWKS from {url}: {e}") from e
        self._keys = keys
        self._fetched_at = time.monotonic()
