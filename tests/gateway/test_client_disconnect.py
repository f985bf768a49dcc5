"""A client that leaves mid-body is recorded by the gateway as 499, never as a 5xx."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from stack.slo import load_spec
from tests.gateway.conftest import GatewayAt, UpstreamFactory, until_routed
from tests.support.poll import poll_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


async def _post_half_and_leave(base: str, path: str) -> None:
    host, port = base.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n".encode()
        + b'{"symbol":'
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def _post_statuses(http: aiohttp.ClientSession, base: str) -> dict[str, float]:
    async with http.get(f"{base}/metrics") as response:
        text = await response.text()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "astra_http_server_requests":
            continue
        for sample in family.samples:
            # Counted requests only: the gateway creates its 5xx series at zero up front.
            counted = sample.value > 0
            if counted and sample.name.endswith("_total") and sample.labels["method"] == "POST":
                status = sample.labels["status"]
                found[status] = found.get(status, 0.0) + sample.value
    return found


async def test_a_client_leaving_mid_body_is_499_and_not_forwarded(
    redis_url: str, upstreams: UpstreamFactory, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    trading = await upstreams("trading", "trading-1")
    async with gateway_at(redis_url) as base:
        await until_routed(http, f"{base}/api/v1/trading/markets")
        await _post_half_and_leave(base, "/api/v1/trading/orders")

        async def recorded() -> dict[str, float]:
            return await _post_statuses(http, base)

        seen = await poll_until(recorded, "the POST recorded", timeout=5)
        assert seen == {"499": 1.0}, seen
    assert [s for s in trading.seen if s["method"] == "POST"] == []


def test_the_availability_slo_counts_5xx_only() -> None:
    """499 is not in the error ratio the availability SLOs (and their alerts) read."""
    spec = load_spec(ROOT / "alerts" / "slos.yaml")
    availability = [slo for slo in spec.slos if slo.kind == "availability"]
    assert availability
    for slo in availability:
        errors = slo.sli.events.error_query
        assert 'status=~"5.."' in errors, slo.name
        assert "499" not in errors, slo.name
        assert '"4' not in errors, slo.name
    generated = sorted((ROOT / "alerts" / "rules").glob("slo-*-availability.yml"))
    assert len(generated) == len(availability)
    for path in generated:
        doc = yaml.safe_load(path.read_text())
        ratios = [
            rule["expr"]
            for group in doc["groups"]
            for rule in group["rules"]
            # the SLI windows themselves (the 30-day one is built from them)
            if rule.get("record", "").startswith("slo:sli_error:ratio_rate")
            and "astra_http_server" in rule["expr"]
        ]
        assert ratios, path
        for expr in ratios:
            assert 'status=~"5.."' in expr, (path, expr)
            assert "499" not in expr, (path, expr)
