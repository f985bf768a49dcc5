"""Conformance: the unmodified `toxiproxy-python` client (import name `toxiproxy`) drives us.

The client is synchronous (requests), so the server runs on its own loop in a thread.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import toxiproxy
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from tests.chaos.conftest import ThreadedFaultProxy
from tests.support.poll import poll_until_sync

pytestmark = pytest.mark.chaos


@pytest.fixture
def server(threaded_faultproxy: ThreadedFaultProxy) -> Iterator[toxiproxy.Toxiproxy]:
    assert threaded_faultproxy.server is not None
    client = toxiproxy.Toxiproxy()
    # The client keeps host and port as class attributes; point them at our server.
    client.update_api_consumer("127.0.0.1", threaded_faultproxy.server.port)
    yield client
    client.destroy_all()


@pytest.fixture
def upstream(threaded_faultproxy: ThreadedFaultProxy) -> str:
    assert threaded_faultproxy.echo is not None
    return threaded_faultproxy.echo.address


def _port(proxy: toxiproxy.Proxy) -> int:
    return int(proxy.listen.rsplit(":", 1)[1])


def _echo(port: int, payload: bytes = b"hello") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = sock.recv(1024)
            if not chunk:
                break
            got += chunk
        return got


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_running_and_version(server: toxiproxy.Toxiproxy) -> None:
    assert server.running() is True
    assert b'"version"' in server.version()


def test_create_list_get_and_destroy(server: toxiproxy.Toxiproxy, upstream: str) -> None:
    proxy = server.create(upstream=upstream, name="echo")

    assert proxy.name == "echo"
    assert proxy.upstream == upstream
    assert proxy.enabled is True
    assert _port(proxy) > 0  # listen "127.0.0.1:0" came back with the real port
    assert _echo(_port(proxy)) == b"hello"
    assert set(server.proxies()) == {"echo"}
    assert server.get_proxy("echo").listen == proxy.listen
    assert server.get_proxy("missing") is None

    assert server.destroy(proxy) is True
    assert server.proxies() == {}
    assert _refused(_port(proxy))


def test_create_twice_raises_proxy_exists(server: toxiproxy.Toxiproxy, upstream: str) -> None:
    server.create(upstream=upstream, name="echo")
    with pytest.raises(ProxyExists):
        server.create(upstream=upstream, name="echo")


def test_disable_and_enable(server: toxiproxy.Toxiproxy, upstream: str) -> None:
    proxy = server.create(upstream=upstream, name="echo")

    proxy.disable()
    assert server.get_proxy("echo").enabled is False
    assert _refused(_port(proxy))

    proxy.enable()
    assert server.get_proxy("echo").enabled is True
    assert _echo(_port(proxy)) == b"hello"

    with proxy.down():
        assert _refused(_port(proxy))
    assert _echo(_port(proxy)) == b"hello"


def test_add_list_and_destroy_toxics(server: toxiproxy.Toxiproxy, upstream: str) -> None:
    proxy = server.create(upstream=upstream, name="echo")
    proxy.add_toxic(type="latency", attributes={"latency": 100, "jitter": 10})
    proxy.add_toxic(type="bandwidth", stream="upstream", name="slow", attributes={"rate": 50})

    toxics = proxy.toxics()
    assert set(toxics) == {"latency_downstream", "slow"}
    latency = proxy.get_toxic("latency_downstream")
    assert latency is not None
    assert latency.type == "latency"
    assert latency.stream == "downstream"
    assert latency.toxicity == 1.0
    assert latency.attributes == {"latency": 100, "jitter": 10}
    assert toxics["slow"].stream == "upstream"
    assert toxics["slow"].attributes == {"rate": 50}

    assert proxy.destroy_toxic("slow") is True
    assert set(proxy.toxics()) == {"latency_downstream"}


def test_invalid_toxic_and_missing_proxy(server: toxiproxy.Toxiproxy, upstream: str) -> None:
    proxy = server.create(upstream=upstream, name="echo")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="no_such_toxic")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="latency", stream="sideways")
    proxy.destroy()
    with pytest.raises(NotFound):
        proxy.toxics()


def test_reset_enables_proxies_and_removes_toxics(
    server: toxiproxy.Toxiproxy, upstream: str
) -> None:
    proxy = server.create(upstream=upstream, name="echo")
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    proxy.disable()

    assert server.reset() is True

    proxy = server.get_proxy("echo")
    assert proxy.enabled is True
    assert proxy.toxics() == {}
    assert poll_until_sync(lambda: _echo(_port(proxy)) == b"hello", "echo after reset")


def test_populate_creates_and_keeps(server: toxiproxy.Toxiproxy, upstream: str) -> None:
    wanted = [
        {"name": "one", "upstream": upstream, "listen": "127.0.0.1:0"},
        {"name": "two", "upstream": upstream, "listen": "127.0.0.1:0"},
    ]
    created = server.populate(wanted)
    assert sorted(p.name for p in created) == ["one", "two"]
    assert set(server.proxies()) == {"one", "two"}
    for proxy in server.proxies().values():
        assert _echo(_port(proxy)) == b"hello"
