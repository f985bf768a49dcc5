"""The HTTP API beyond what toxiproxy-python covers: PATCH, /populate, toxic updates, errors.

Expected bodies are Toxiproxy 2.x's (`api.go`): `{"error": ..., "status": ...}` with its
messages and status codes. Every refused request must leave existing proxies as they were.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from chaos.client import Proxy, ToxiproxyClient
from chaos.faultproxy import VERSION
from tests.chaos.conftest import Conn, Upstream, round_trip

pytestmark = pytest.mark.chaos


async def _call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
    async with http.request(method, path, **kwargs) as response:
        if response.status == 204:
            assert await response.read() == b""
            return 204, None
        assert response.content_type == "application/json"
        return response.status, await response.json()


async def _snapshot(http: aiohttp.ClientSession) -> Any:
    status, body = await _call(http, "GET", "/proxies")
    assert status == 200
    return body


async def test_version(http: aiohttp.ClientSession) -> None:
    assert await _call(http, "GET", "/version") == (200, {"version": VERSION})


async def test_create_shows_real_port_and_empty_toxics(
    http: aiohttp.ClientSession, echo_upstream: Upstream
) -> None:
    status, body = await _call(
        http,
        "POST",
        "/proxies",
        {"name": "echo", "listen": "127.0.0.1:0", "upstream": echo_upstream.address},
    )
    assert status == 201
    assert body["name"] == "echo"
    assert body["upstream"] == echo_upstream.address
    assert body["enabled"] is True
    assert body["toxics"] == []
    host, port = body["listen"].rsplit(":", 1)
    assert host == "127.0.0.1"
    assert int(port) > 0
    assert await _snapshot(http) == {"echo": body}


async def test_create_disabled_does_not_listen(
    http: aiohttp.ClientSession, echo_upstream: Upstream
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    body = {"name": "off", "listen": f"127.0.0.1:{port}", "upstream": echo_upstream.address}
    status, shown = await _call(http, "POST", "/proxies", {**body, "enabled": False})
    assert status == 201
    assert shown["enabled"] is False
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def test_patch_updates_fields_and_post_still_works(
    http: aiohttp.ClientSession, echo_proxy: Proxy, upstream_factory: Callable[..., Any]
) -> None:
    status, body = await _call(http, "PATCH", "/proxies/echo", {"enabled": False})
    assert status == 200
    assert body["enabled"] is False
    assert body["listen"] == echo_proxy.listen  # untouched fields stay

    status, body = await _call(http, "POST", "/proxies/echo", {"enabled": True})
    assert (status, body["enabled"]) == (200, True)

    other: Upstream = await upstream_factory()
    status, body = await _call(
        http, "PATCH", "/proxies/echo", {"upstream": other.address, "listen": "127.0.0.1:0"}
    )
    assert status == 200
    assert body["upstream"] == other.address
    assert body["enabled"] is True
    assert body["listen"] != echo_proxy.listen  # rebound on a new free port


async def test_update_moves_connections_to_new_upstream(
    toxiproxy: ToxiproxyClient,
    echo_proxy: Proxy,
    upstream_factory: Callable[..., Any],
    connect: Callable[[Proxy], Awaitable[Conn]],
) -> None:
    other: Upstream = await upstream_factory()
    await echo_proxy.update(upstream=other.address)
    await round_trip(await connect(echo_proxy))
    _, data = await other.arrivals.get()
    assert data == b"ping"


async def test_populate_creates_replaces_and_is_idempotent(
    http: aiohttp.ClientSession, echo_upstream: Upstream, upstream_factory: Callable[..., Any]
) -> None:
    first = [
        {"name": "a", "listen": "127.0.0.1:0", "upstream": echo_upstream.address},
        {"name": "b", "listen": "127.0.0.1:0", "upstream": echo_upstream.address},
    ]
    status, body = await _call(http, "POST", "/populate", first)
    assert status == 201
    assert [p["name"] for p in body["proxies"]] == ["a", "b"]
    listens = {p["name"]: p["listen"] for p in body["proxies"]}
    await _call(http, "POST", "/proxies/a/toxics", {"type": "latency"})

    # Same data again: nothing is replaced (same ports, toxics kept).
    status, body = await _call(http, "POST", "/populate", first)
    assert status == 201
    assert {p["name"]: p["listen"] for p in body["proxies"]} == listens
    assert [t["name"] for t in body["proxies"][0]["toxics"]] == ["latency_downstream"]

    # A new upstream replaces the proxy (toxics gone); a new name is added; none removed.
    other: Upstream = await upstream_factory()
    second = [
        {"name": "a", "listen": "127.0.0.1:0", "upstream": other.address},
        {"name": "c", "listen": "127.0.0.1:0", "upstream": echo_upstream.address},
    ]
    status, body = await _call(http, "POST", "/populate", second)
    assert status == 201
    assert body["proxies"][0]["upstream"] == other.address
    assert body["proxies"][0]["toxics"] == []
    assert set(await _snapshot(http)) == {"a", "b", "c"}


async def test_toxic_create_defaults_and_show(
    http: aiohttp.ClientSession, echo_proxy: Proxy
) -> None:
    status, body = await _call(http, "POST", "/proxies/echo/toxics", {"type": "slicer"})
    assert status == 200  # Toxiproxy answers 200, not 201, for a new toxic
    assert body == {
        "attributes": {"average_size": 0, "size_variation": 0, "delay": 0},
        "name": "slicer_downstream",
        "type": "slicer",
        "stream": "downstream",
        "toxicity": 1.0,
    }
    assert await _call(http, "GET", "/proxies/echo/toxics/slicer_downstream") == (200, body)
    up = {"type": "limit_data", "stream": "upstream", "attributes": {"bytes": 7}}
    status, _ = await _call(http, "POST", "/proxies/echo/toxics", up)
    assert status == 200
    status, toxics = await _call(http, "GET", "/proxies/echo/toxics")
    assert [t["name"] for t in toxics] == ["limit_data_upstream", "slicer_downstream"]


async def test_toxic_update_merges_attributes(
    http: aiohttp.ClientSession, echo_proxy: Proxy
) -> None:
    latency = {"type": "latency", "attributes": {"latency": 100, "jitter": 10}}
    await _call(http, "POST", "/proxies/echo/toxics", latency)

    status, body = await _call(
        http, "PATCH", "/proxies/echo/toxics/latency_downstream", {"attributes": {"latency": 250}}
    )
    assert status == 200
    assert body["attributes"] == {"latency": 250, "jitter": 10}
    assert body["toxicity"] == 1.0

    status, body = await _call(
        http,
        "POST",
        "/proxies/echo/toxics/latency_downstream",
        {"toxicity": 0.25, "type": "timeout", "stream": "upstream"},
    )
    assert status == 200
    assert body["toxicity"] == 0.25
    assert (body["type"], body["stream"]) == ("latency", "downstream")  # not changeable


async def test_toxic_delete_and_reset(http: aiohttp.ClientSession, echo_proxy: Proxy) -> None:
    await _call(http, "POST", "/proxies/echo/toxics", {"type": "latency"})
    assert await _call(http, "DELETE", "/proxies/echo/toxics/latency_downstream") == (204, None)
    assert await _call(http, "DELETE", "/proxies/echo/toxics/latency_downstream") == (
        404,
        {"error": "toxic not found", "status": 404},
    )
    await _call(http, "POST", "/proxies/echo/toxics", {"type": "latency"})
    await _call(http, "PATCH", "/proxies/echo", {"enabled": False})
    assert await _call(http, "POST", "/reset") == (204, None)
    proxy = (await _snapshot(http))["echo"]
    assert proxy["enabled"] is True
    assert proxy["toxics"] == []
    assert await _call(http, "DELETE", "/proxies/echo") == (204, None)
    assert await _snapshot(http) == {}


BAD_TOXICS: list[tuple[str, Any, int, str]] = [
    ("unknown type", {"type": "melt"}, 400, "invalid toxic type"),
    ("no type", {"stream": "upstream"}, 400, "invalid toxic type"),
    (
        "bad stream",
        {"type": "latency", "stream": "sideways"},
        400,
        "stream was invalid, can be either upstream or downstream",
    ),
    ("negative", {"type": "latency", "attributes": {"latency": -5}}, 400, "bad request body: "),
    ("string", {"type": "latency", "attributes": {"latency": "5"}}, 400, "bad request body: "),
    ("fraction", {"type": "bandwidth", "attributes": {"rate": 1.5}}, 400, "bad request body: "),
    ("bool", {"type": "timeout", "attributes": {"timeout": True}}, 400, "bad request body: "),
    ("toxicity > 1", {"type": "latency", "toxicity": 1.5}, 400, "bad request body: "),
    ("toxicity < 0", {"type": "latency", "toxicity": -0.1}, 400, "bad request body: "),
    ("toxicity text", {"type": "latency", "toxicity": "all"}, 400, "bad request body: "),
    ("not an object", [1, 2], 400, "bad request body: "),
    ("duplicate name", {"type": "latency", "name": "existing"}, 409, "toxic already exists"),
]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [case[1:] for case in BAD_TOXICS],
    ids=[case[0] for case in BAD_TOXICS],
)
async def test_bad_toxics_are_refused_without_side_effects(
    http: aiohttp.ClientSession,
    echo_proxy: Proxy,
    connect: Callable[[Proxy], Awaitable[Conn]],
    body: Any,
    status: int,
    message: str,
) -> None:
    await _call(http, "POST", "/proxies/echo/toxics", {"type": "slow_close", "name": "existing"})
    conn = await connect(echo_proxy)
    before = await _snapshot(http)

    got_status, error = await _call(http, "POST", "/proxies/echo/toxics", body)

    assert got_status == status
    assert error["status"] == status
    assert error["error"].startswith(message)
    assert await _snapshot(http) == before
    assert await round_trip(conn) < 1.0  # the open connection still works


async def test_malformed_json_and_empty_body(
    http: aiohttp.ClientSession, echo_proxy: Proxy
) -> None:
    for path in ("/proxies", "/proxies/echo", "/proxies/echo/toxics", "/populate"):
        status, error = await _call(http, "POST", path, raw=b'{"name": bad}')
        assert status == 400, path
        assert error["status"] == 400
        assert error["error"].startswith("bad request body: ")
    status, error = await _call(http, "POST", "/proxies", raw=b"")
    assert (status, error) == (400, {"error": "bad request body: EOF", "status": 400})


async def test_missing_fields(http: aiohttp.ClientSession) -> None:
    assert await _call(http, "POST", "/proxies", {"upstream": "127.0.0.1:1"}) == (
        400,
        {"error": "missing required field: name", "status": 400},
    )
    assert await _call(http, "POST", "/proxies", {"name": "x"}) == (
        400,
        {"error": "missing required field: upstream", "status": 400},
    )
    status, body = await _call(http, "POST", "/populate", [{"name": "x"}])
    assert status == 400
    assert body == {
        "error": "missing required field: upstream at proxy 1",
        "status": 400,
        "proxies": None,
    }
    assert await _snapshot(http) == {}


async def test_not_found_and_conflict(http: aiohttp.ClientSession, echo_proxy: Proxy) -> None:
    not_found = {"error": "proxy not found", "status": 404}
    assert await _call(http, "GET", "/proxies/nope") == (404, not_found)
    assert await _call(http, "PATCH", "/proxies/nope", {"enabled": False}) == (404, not_found)
    assert await _call(http, "DELETE", "/proxies/nope") == (404, not_found)
    assert await _call(http, "GET", "/proxies/nope/toxics") == (404, not_found)
    assert await _call(http, "GET", "/proxies/echo/toxics/nope") == (
        404,
        {"error": "toxic not found", "status": 404},
    )
    dup = {"name": "echo", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}
    assert await _call(http, "POST", "/proxies", dup) == (
        409,
        {"error": "proxy already exists", "status": 409},
    )
    status, body = await _call(http, "GET", "/no/such/route")
    assert status == 404
    assert body["status"] == 404


async def test_listen_address_in_use(
    http: aiohttp.ClientSession, echo_proxy: Proxy, connect: Callable[[Proxy], Awaitable[Conn]]
) -> None:
    conn = await connect(echo_proxy)
    before = await _snapshot(http)
    taken = echo_proxy.listen
    body = {"name": "clash", "listen": taken, "upstream": "127.0.0.1:1"}

    status, error = await _call(http, "POST", "/proxies", body)
    assert status == 500
    assert error == {"error": f"listen tcp {taken}: bind: address already in use", "status": 500}

    status, error = await _call(http, "POST", "/populate", [body])
    assert (status, error["status"]) == (500, 500)
    assert error["error"] == f"listen tcp {taken}: bind: address already in use"

    with socket.socket() as holder:  # a port held by someone else
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = f"127.0.0.1:{holder.getsockname()[1]}"
        status, error = await _call(http, "PATCH", "/proxies/echo", {"listen": busy})
        assert status == 500
        assert error["error"] == f"listen tcp {busy}: bind: address already in use"

    status, _ = await _call(http, "POST", "/proxies", {**body, "listen": "nonsense"})
    assert status == 500
    assert await _snapshot(http) == before
    assert await round_trip(conn) < 1.0


async def test_populate_is_all_or_nothing(
    http: aiohttp.ClientSession,
    echo_proxy: Proxy,
    upstream_factory: Callable[..., Any],
    connect: Callable[[Proxy], Awaitable[Conn]],
) -> None:
    await _call(http, "POST", "/proxies/echo/toxics", {"type": "latency"})
    before = await _snapshot(http)
    other: Upstream = await upstream_factory()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = f"127.0.0.1:{holder.getsockname()[1]}"
        batch = [
            {"name": "echo", "listen": "127.0.0.1:0", "upstream": other.address},  # replaces
            {"name": "new", "listen": "127.0.0.1:0", "upstream": other.address},
            {"name": "clash", "listen": busy, "upstream": other.address},
        ]
        status, body = await _call(http, "POST", "/populate", batch)
    assert status == 500
    assert body["error"] == f"listen tcp {busy}: bind: address already in use"
    assert await _snapshot(http) == before  # echo restored on its port, with its toxic
    await round_trip(await connect(echo_proxy))
    status, body = await _call(http, "POST", "/populate", [batch[1], batch[1]])
    assert status == 500
    assert body["error"] == 'duplicate proxy name "new"'
    assert await _snapshot(http) == before


async def test_upstream_refusing_connections(
    http: aiohttp.ClientSession,
    faultproxy: Any,
    echo_proxy: Proxy,
    toxiproxy: ToxiproxyClient,
    connect: Callable[[Proxy], Awaitable[Conn]],
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    working = await connect(echo_proxy)

    proxy = await toxiproxy.create_proxy("dead", upstream=dead)  # accepted, as Toxiproxy does
    reader, _ = await connect(proxy)
    assert await reader.read() == b""  # the client is closed at once

    stats = faultproxy.metrics.stats_for("dead")
    assert stats.upstream_errors == 1
    assert await round_trip(working) < 1.0


async def test_browsers_are_refused(http: aiohttp.ClientSession, echo_proxy: Proxy) -> None:
    headers = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"}
    async with http.get("/proxies", headers=headers) as response:
        assert response.status == 403
        assert await response.json() == {"error": "User agent not allowed", "status": 403}
    async with http.post("/reset", headers=headers) as response:
        assert response.status == 403
    assert (await _snapshot(http))["echo"]["enabled"] is True
