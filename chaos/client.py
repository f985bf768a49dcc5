"""A small typed async client for Toxiproxy's documented HTTP API.

It drives `chaos.faultproxy` and the real Toxiproxy 2.x alike, so a drill runs unchanged
against either:

    async with ToxiproxyClient("http://127.0.0.1:8474") as toxiproxy:
        await toxiproxy.wait_ready()
        redis = await toxiproxy.create_proxy("redis", upstream="127.0.0.1:6379")
        host, port = redis.address                    # connect the system under test here
        async with redis.toxic("latency", latency=500, jitter=50):
            ...                                       # every reply from Redis is ~500 ms late
        async with redis.down():
            ...                                       # connections dropped and refused
        await redis.delete()

Every request has a timeout; errors carry Toxiproxy's status and message.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp

__all__ = [
    "BadRequest",
    "Conflict",
    "NotFound",
    "Proxy",
    "Toxic",
    "ToxiproxyClient",
    "ToxiproxyError",
]


class ToxiproxyError(Exception):
    """The server answered with an error (`status`, `message` as it sent them)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class BadRequest(ToxiproxyError):
    pass


class NotFound(ToxiproxyError):
    pass


class Conflict(ToxiproxyError):
    pass


_ERRORS: dict[int, type[ToxiproxyError]] = {400: BadRequest, 404: NotFound, 409: Conflict}


@dataclass(frozen=True)
class Toxic:
    name: str
    type: str
    stream: str  # "upstream" (client -> server) or "downstream" (server -> client)
    toxicity: float
    attributes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Toxic:
        return cls(
            name=body["name"],
            type=body["type"],
            stream=body.get("stream", "downstream"),
            toxicity=float(body.get("toxicity", 1.0)),
            attributes=dict(body.get("attributes") or {}),
        )


class Proxy:
    """A proxy on the server; methods act on it, fields show its last known state."""

    def __init__(self, client: ToxiproxyClient, body: Mapping[str, Any]) -> None:
        self._client = client
        self._apply(body)

    def _apply(self, body: Mapping[str, Any]) -> None:
        self.name: str = body["name"]
        self.listen: str = body["listen"]
        self.upstream: str = body["upstream"]
        self.enabled: bool = body["enabled"]
        self.toxics: list[Toxic] = [Toxic.from_json(t) for t in body.get("toxics") or []]

    def __repr__(self) -> str:
        return (
            f"<Proxy {self.name} listen={self.listen} upstream={self.upstream} "
            f"enabled={self.enabled} toxics={[t.name for t in self.toxics]}>"
        )

    @property
    def address(self) -> tuple[str, int]:
        """Where to connect to go through the proxy (a wildcard listen means loopback)."""
        host, _, port = self.listen.rpartition(":")
        host = host.strip("[]")
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return host, int(port)

    @property
    def _path(self) -> str:
        return f"/proxies/{self.name}"

    async def refresh(self) -> Proxy:
        self._apply(await self._client.request("GET", self._path))
        return self

    async def update(
        self,
        *,
        enabled: bool | None = None,
        listen: str | None = None,
        upstream: str | None = None,
    ) -> Proxy:
        """Change fields; POST, as the Toxiproxy README documents (PATCH is newer)."""
        body = {
            key: value
            for key, value in (("enabled", enabled), ("listen", listen), ("upstream", upstream))
            if value is not None
        }
        self._apply(await self._client.request("POST", self._path, body))
        return self

    async def enable(self) -> Proxy:
        return await self.update(enabled=True)

    async def disable(self) -> Proxy:
        """Drop open connections and refuse new ones until enabled."""
        return await self.update(enabled=False)

    async def delete(self) -> None:
        await self._client.request("DELETE", self._path, expect=204)

    async def list_toxics(self) -> list[Toxic]:
        body = await self._client.request("GET", f"{self._path}/toxics")
        self.toxics = [Toxic.from_json(t) for t in body]
        return self.toxics

    async def get_toxic(self, name: str) -> Toxic:
        return Toxic.from_json(await self._client.request("GET", f"{self._path}/toxics/{name}"))

    async def add_toxic(
        self,
        toxic_type: str,
        *,
        stream: str = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
        **attributes: int,
    ) -> Toxic:
        """Add a toxic, e.g. `add_toxic("bandwidth", stream="upstream", rate=100)`."""
        body = {
            "name": name or f"{toxic_type}_{stream}",
            "type": toxic_type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": attributes,
        }
        return Toxic.from_json(await self._client.request("POST", f"{self._path}/toxics", body))

    async def update_toxic(
        self, name: str, *, toxicity: float | None = None, **attributes: int
    ) -> Toxic:
        """Change some attributes (the others stay) and/or the toxicity."""
        body: dict[str, Any] = {"attributes": attributes}
        if toxicity is not None:
            body["toxicity"] = toxicity
        path = f"{self._path}/toxics/{name}"
        return Toxic.from_json(await self._client.request("POST", path, body))

    async def remove_toxic(self, name: str) -> None:
        await self._client.request("DELETE", f"{self._path}/toxics/{name}", expect=204)

    @asynccontextmanager
    async def toxic(
        self,
        toxic_type: str,
        *,
        stream: str = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
        **attributes: int,
    ) -> AsyncIterator[Toxic]:
        """The toxic is present inside the block and removed after it, even on error."""
        toxic = await self.add_toxic(
            toxic_type, stream=stream, toxicity=toxicity, name=name, **attributes
        )
        try:
            yield toxic
        finally:
            with suppress(NotFound):  # a /reset inside the block already removed it
                await self.remove_toxic(toxic.name)

    @asynccontextmanager
    async def down(self) -> AsyncIterator[Proxy]:
        """The proxy is disabled inside the block and enabled again after it."""
        await self.disable()
        try:
            yield self
        finally:
            await self.enable()


class ToxiproxyClient:
    def __init__(
        self,
        url: str = "http://127.0.0.1:8474",
        *,
        timeout: float = 5.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None

    def __repr__(self) -> str:
        return f"<ToxiproxyClient {self.url}>"

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def request(
        self, method: str, path: str, body: Any = None, *, expect: int | None = None
    ) -> Any:
        """One API call; returns the decoded JSON (None for 204), raises `ToxiproxyError`."""
        async with self._http().request(
            method, self.url + path, json=body, timeout=self.timeout
        ) as response:
            status, text = response.status, await response.text()
        if status >= 400:
            message = text.strip()
            with suppress(ValueError, TypeError, KeyError):
                message = json.loads(text)["error"]
            raise _ERRORS.get(status, ToxiproxyError)(status, message)
        if expect is not None and status != expect:
            raise ToxiproxyError(status, f"expected HTTP {expect}: {text}")
        if status == 204 or not text:
            return None
        return json.loads(text)

    async def version(self) -> str:
        async with self._http().get(self.url + "/version", timeout=self.timeout) as response:
            text = await response.text()
        with suppress(ValueError, TypeError, KeyError):
            return str(json.loads(text)["version"])
        return text.strip()  # Toxiproxy before 2.1 answered with the bare version

    async def wait_ready(self, within: float = 10.0) -> str:
        """Poll `/version` until the server answers (at most `within` seconds); its version."""
        deadline = time.monotonic() + within
        while True:
            try:
                return await self.version()
            except (aiohttp.ClientError, TimeoutError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no Toxiproxy API at {self.url} after {within}s") from None
                await asyncio.sleep(0.05)

    async def proxies(self) -> dict[str, Proxy]:
        body = await self.request("GET", "/proxies")
        return {name: Proxy(self, value) for name, value in body.items()}

    async def get_proxy(self, name: str) -> Proxy:
        return Proxy(self, await self.request("GET", f"/proxies/{name}"))

    async def create_proxy(
        self, name: str, upstream: str, listen: str = "127.0.0.1:0", *, enabled: bool = True
    ) -> Proxy:
        body = {"name": name, "upstream": upstream, "listen": listen, "enabled": enabled}
        return Proxy(self, await self.request("POST", "/proxies", body, expect=201))

    async def populate(self, proxies: Iterable[Mapping[str, Any]]) -> list[Proxy]:
        """Create or replace proxies (`name`, `listen`, `upstream`, optional `enabled`)."""
        body = await self.request("POST", "/populate", [dict(p) for p in proxies], expect=201)
        return [Proxy(self, value) for value in body["proxies"]]

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        await self.request("POST", "/reset", expect=204)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    async def __aenter__(self) -> ToxiproxyClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
