"""The process kit's settings base: shared fields once, each deployable its own address."""

from __future__ import annotations

import pytest

from backbone.service.config import ServiceSettings
from gateway.config import GatewaySettings
from tests.support.settings import TEST_OPERATOR_TOKEN, TEST_REGISTRY_TOKEN


def test_shared_fields_come_from_the_same_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRA_REGISTRY__TOKEN", TEST_REGISTRY_TOKEN)
    monkeypatch.setenv("ASTRA_GATEWAY_OPERATOR_TOKEN", TEST_OPERATOR_TOKEN)
    monkeypatch.setenv("ASTRA_REDIS_URL", "redis://127.0.0.1:7000/0")
    monkeypatch.setenv("ASTRA_BUS__BATCH_SIZE", "7")
    monkeypatch.setenv("ASTRA_PORT", "9101")  # a service's port
    monkeypatch.setenv("ASTRA_GATEWAY_PORT", "9000")
    service, gateway = ServiceSettings(service="trading"), GatewaySettings()
    for settings in (service, gateway):
        assert settings.redis_url == "redis://127.0.0.1:7000/0"
        assert settings.bus.batch_size == 7
        assert settings.registry.token == TEST_REGISTRY_TOKEN
    assert (service.port, gateway.port) == (9101, 9000)  # never each other's
    assert service.public_url == "http://127.0.0.1:9101"
    assert gateway.public_url == "http://127.0.0.1:9000"
    assert service.instance_id.startswith("trading-")
    assert gateway.instance_id.startswith("gateway-")
    assert service.database_url.endswith("/data/trading.db")


def test_the_http_limits_of_a_service_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRA_HTTP__MAX_HEADER_BYTES", "4096")
    settings = ServiceSettings(registry={"token": TEST_REGISTRY_TOKEN})
    assert settings.http.max_header_bytes == 4096
    assert settings.http.max_connections_per_address is None
    gateway = GatewaySettings(
        registry={"token": TEST_REGISTRY_TOKEN}, operator_token=TEST_OPERATOR_TOKEN
    )
    assert gateway.edge.max_connections_per_address == 256


def test_a_missing_registry_secret_is_refused_by_every_deployable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ASTRA_REGISTRY__TOKEN", raising=False)
    with pytest.raises(ValueError, match="ASTRA_REGISTRY__TOKEN is not set"):
        ServiceSettings()
    with pytest.raises(ValueError, match="ASTRA_REGISTRY__TOKEN is not set"):
        GatewaySettings(operator_token=TEST_OPERATOR_TOKEN)
