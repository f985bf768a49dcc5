"""The gateway's OpenAPI document describes the public API; route templates label requests."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from gateway.config import GatewaySettings
from gateway.public_api import PublicRoutes, openapi_document
from tests.gateway.conftest import GatewayAt
from tests.support.settings import TEST_OPERATOR_TOKEN, TEST_REGISTRY_TOKEN

PUBLIC_API = {
    ("post", "/api/v1/users/register"),
    ("post", "/api/v1/users/login"),
    ("get", "/api/v1/users/me"),
    ("get", "/api/v1/trading/markets"),
    ("post", "/api/v1/trading/orders"),
    ("get", "/api/v1/trading/orders"),
    ("get", "/api/v1/trading/orders/{order_id}"),
    ("get", "/api/v1/trading/portfolio"),
    ("get", "/api/v1/gamification/profile"),
    ("get", "/api/v1/gamification/leaderboard"),
    ("get", "/api/v1/nft/collection"),
    ("get", "/api/v1/social/feed"),
}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_document_lists_the_public_api_with_auth_and_problems() -> None:
    doc = openapi_document(
        GatewaySettings(registry={"token": TEST_REGISTRY_TOKEN}, operator_token=TEST_OPERATOR_TOKEN)
    )
    assert doc["openapi"].startswith("3.1")
    operations = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert operations == PUBLIC_API
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):  # every reference resolves
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    assert {"type", "title", "status"} <= set(schemas["Problem"]["properties"])

    order = doc["paths"]["/api/v1/trading/orders"]["post"]
    assert order["security"] == [{"bearerAuth": []}]
    assert "201" in order["responses"]
    body = order["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schemas[body.rsplit("/", 1)[1]]["required"] == ["symbol", "side", "quantity"]
    created = order["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    assert {"order_id", "symbol", "side", "quantity", "price", "status", "executed_at"} <= set(
        schemas[created.rsplit("/", 1)[1]]["properties"]
    )
    for code in ("401", "422", "429", "503"):
        content = order["responses"][code]["content"]
        assert content == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }
    register = doc["paths"]["/api/v1/users/register"]["post"]
    assert {} in register["security"]  # public: no token needed
    assert "401" not in register["responses"]
    feed = doc["paths"]["/api/v1/social/feed"]["get"]
    assert {p["name"] for p in feed["parameters"]} == {"user", "cursor", "limit"}
    json.dumps(doc)  # plain JSON


def test_route_templates() -> None:
    routes = PublicRoutes()
    order = "/api/v1/trading/orders/0190abcd"
    assert routes.match("GET", order, "trading") == "/api/v1/trading/orders/{order_id}"
    assert routes.match("POST", "/api/v1/trading/orders", "trading") == "/api/v1/trading/orders"
    assert routes.match("DELETE", order, "trading") is None
    assert routes.match("GET", "/api/v1/trading/elsewhere", "trading") is None


@pytest.mark.integration
async def test_served_at_openapi_json(
    redis_url: str, gateway_at: GatewayAt, http: aiohttp.ClientSession
) -> None:
    async with gateway_at(redis_url) as base, http.get(f"{base}/openapi.json") as response:
        assert response.status == 200
        doc = await response.json()
    assert doc["servers"] == [{"url": base}]
    assert ("get", "/api/v1/trading/markets") in {
        (m, p) for p, ops in doc["paths"].items() for m in ops
    }
