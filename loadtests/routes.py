"""Request name -> SLO class, read from the gateway's route table (gateway/public_api.py).

Every Locust request is named by its route template, so the statistics of
`GET /api/v1/trading/orders/{order_id}` group under one name, and that name is the
route's key in the table the gateway labels its metrics from: one declaration, read here.
"""

from __future__ import annotations

from functools import cache

from gateway.public_api import PublicRoutes, SloClass


@cache
def _classes() -> dict[str, SloClass]:
    return {spec.key: spec.slo_class for spec in PublicRoutes().all()}


def slo_class_of(method: str, name: str) -> SloClass | None:
    """slo_class_of("POST", "/api/v1/trading/orders") -> "write"; None if not a route."""
    return _classes().get(f"{method.upper()} {name}")


def templates() -> frozenset[str]:
    """Every declared "METHOD /template" key."""
    return frozenset(_classes())
