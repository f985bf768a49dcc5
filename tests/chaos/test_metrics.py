"""/metrics: bytes per proxy and direction, connections, toxics, in Prometheus text."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chaos.client import Proxy
from tests.chaos.conftest import Conn, round_trip
from tests.support.poll import poll_until

pytestmark = pytest.mark.chaos


async def _samples(
    http: aiohttp.ClientSession,
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with http.get("/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


async def test_metrics_count_bytes_connections_and_toxics(
    http: aiohttp.ClientSession, echo_proxy: Proxy, connect: Callable[[Proxy], Awaitable[Conn]]
) -> None:
    reader, writer = await connect(echo_proxy)
    await round_trip((reader, writer), b"x" * 1000)
    await echo_proxy.add_toxic("latency", latency=1)

    samples = await _samples(http)
    for direction in ("upstream", "downstream"):
        labels = {"proxy": "echo", "direction": direction}
        assert samples[_key("astra_faultproxy_received_bytes_total", **labels)] == 1000
        assert samples[_key("astra_faultproxy_sent_bytes_total", **labels)] == 1000
    assert samples[_key("astra_faultproxy_connections_total", proxy="echo")] == 1
    assert samples[_key("astra_faultproxy_active_connections", proxy="echo")] == 1
    toxic = _key(
        "astra_faultproxy_toxics_active", proxy="echo", type="latency", stream="downstream"
    )
    assert samples[toxic] == 1

    await echo_proxy.remove_toxic("latency_downstream")
    writer.close()
    active = _key("astra_faultproxy_active_connections", proxy="echo")

    async def released() -> bool:
        return (await _samples(http))[active] == 0

    await poll_until(released, "active connections to drop to 0")
    assert toxic not in await _samples(http)


async def test_deleted_proxy_series_disappear(
    http: aiohttp.ClientSession, echo_proxy: Proxy
) -> None:
    assert _key("astra_faultproxy_connections_total", proxy="echo") in await _samples(http)
    await echo_proxy.delete()
    assert not any(dict(labels).get("proxy") == "echo" for _, labels in await _samples(http))
