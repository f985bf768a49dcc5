"""All proxies by name (Toxiproxy's `proxy_collection.go`): uniqueness, populate, reset.

Mutations hold one lock, since starting a proxy awaits (name lookup, bind), and each
either completes or leaves every existing proxy as it was.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import TypeVar

from chaos.faultproxy._log import ContextLogger
from chaos.faultproxy.errors import (
    BadRequestBody,
    DuplicateProxyName,
    MissingField,
    ProxyAlreadyExists,
    ProxyNotFound,
)
from chaos.faultproxy.metrics import FaultProxyMetrics
from chaos.faultproxy.proxy import Proxy

T = TypeVar("T")
D = TypeVar("D")

DEFAULT_LISTEN = "127.0.0.1:0"  # Go would bind every interface for ""; a chaos tool should not


@dataclass(frozen=True)
class ProxySpec:
    """The fields a client sets on a proxy."""

    name: str
    upstream: str
    listen: str = DEFAULT_LISTEN
    enabled: bool = True

    @classmethod
    def from_json(cls, body: object, *, position: int | None = None) -> ProxySpec:
        """Validate a decoded JSON object; `position` (1-based) names the entry in /populate."""
        if not isinstance(body, dict):
            raise BadRequestBody("a proxy must be a JSON object")
        name = _field(body, "name", str, "")
        upstream = _field(body, "upstream", str, "")
        listen = _field(body, "listen", str, "") or DEFAULT_LISTEN
        enabled = _field(body, "enabled", bool, True)
        where = "" if position is None else f" at proxy {position}"
        if not name:
            raise MissingField(f"name{where}")
        if not upstream:
            raise MissingField(f"upstream{where}")
        return cls(name=name, upstream=upstream, listen=listen, enabled=enabled)


@dataclass(frozen=True)
class ProxyPatch:
    """A partial update; None keeps the current value."""

    listen: str | None = None
    upstream: str | None = None
    enabled: bool | None = None

    @classmethod
    def from_json(cls, body: object) -> ProxyPatch:
        if not isinstance(body, dict):
            raise BadRequestBody("a proxy must be a JSON object")
        return cls(
            listen=_field(body, "listen", str, None),
            upstream=_field(body, "upstream", str, None),
            enabled=_field(body, "enabled", bool, None),
        )


class ProxyCollection:
    """proxies = ProxyCollection(metrics=m, logger=log, rng=random.Random(seed))"""

    def __init__(
        self,
        *,
        metrics: FaultProxyMetrics,
        logger: logging.Logger,
        rng: random.Random,
    ) -> None:
        self._metrics = metrics
        self._logger = logger
        self._rng = rng
        self._proxies: dict[str, Proxy] = {}
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<ProxyCollection proxies={sorted(self._proxies)}>"

    def proxies(self) -> dict[str, Proxy]:
        return dict(self._proxies)

    def get(self, name: str) -> Proxy:
        try:
            return self._proxies[name]
        except KeyError:
            raise ProxyNotFound() from None

    def new_proxy(self, spec: ProxySpec) -> Proxy:
        return Proxy(
            spec.name,
            spec.listen,
            spec.upstream,
            stats=self._metrics.stats_for(spec.name),
            logger=ContextLogger(self._logger, {"proxy": spec.name}),
            rng=self._rng,
        )

    async def add(self, spec: ProxySpec) -> Proxy:
        async with self._lock:
            if spec.name in self._proxies:
                raise ProxyAlreadyExists()
            proxy = self.new_proxy(spec)
            if spec.enabled:
                await proxy.start()
            self._proxies[spec.name] = proxy
            return proxy

    async def update(self, name: str, patch: ProxyPatch) -> Proxy:
        async with self._lock:
            proxy = self.get(name)
            await proxy.update(
                listen=proxy.listen if patch.listen is None else patch.listen,
                upstream=proxy.upstream if patch.upstream is None else patch.upstream,
                enabled=proxy.enabled if patch.enabled is None else patch.enabled,
            )
            return proxy

    async def remove(self, name: str) -> None:
        async with self._lock:
            proxy = self.get(name)
            del self._proxies[name]
            await proxy.aclose()
            self._metrics.forget(name)

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        async with self._lock:
            for proxy in self._proxies.values():
                await proxy.start()
                proxy.toxics.reset()

    async def populate(self, specs: list[ProxySpec]) -> list[Proxy]:
        """Create or replace each proxy; a proxy whose listen and upstream match stays as is.

        All or nothing: if one cannot start, the ones already replaced are restored.
        """
        seen: set[str] = set()
        for spec in specs:
            if spec.name in seen:
                raise DuplicateProxyName(spec.name)
            seen.add(spec.name)
        async with self._lock:
            result: list[Proxy] = []
            applied: list[tuple[Proxy | None, bool, Proxy]] = []  # (replaced, was_enabled, new)
            try:
                for spec in specs:
                    old = self._proxies.get(spec.name)
                    if old is not None and old.matches(spec.listen, spec.upstream):
                        result.append(old)
                        continue
                    new = self.new_proxy(spec)
                    applied.append((old, old is not None and old.enabled, new))
                    if old is not None:
                        await old.stop()
                    if spec.enabled:
                        await new.start()
                    self._proxies[spec.name] = new
                    result.append(new)
            except BaseException:
                await self._roll_back(applied)
                raise
            for old, _, _ in applied:
                if old is not None:
                    await old.aclose()
            return result

    async def _roll_back(self, applied: list[tuple[Proxy | None, bool, Proxy]]) -> None:
        for old, was_enabled, new in reversed(applied):
            await new.aclose()
            if old is None:
                self._proxies.pop(new.name, None)
                continue
            self._proxies[old.name] = old
            if was_enabled:
                try:
                    await old.start()
                except Exception:
                    self._logger.exception("could not restore proxy", extra={"proxy": old.name})

    async def aclose(self) -> None:
        async with self._lock:
            proxies, self._proxies = list(self._proxies.values()), {}
            for proxy in proxies:
                await proxy.aclose()


def _field(body: dict[str, object], key: str, kind: type[T], default: D) -> T | D:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise BadRequestBody(
            f"cannot unmarshal {type(value).__name__} into proxy.{key} of type {kind.__name__}"
        )
    return value
