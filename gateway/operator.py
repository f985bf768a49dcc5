"""Operator endpoints: the services view and the audit trail, behind the operator token.

The token is compared in constant time and never logged; a missing or wrong one
gets the same 401, so the answer says nothing about how close a guess was.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from backbone.service.problems import ProblemError
from gateway.auth import bearer_token
from gateway.runtime import Gateway

router = APIRouter(prefix="/api/v1", tags=["operator"])


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def require_operator(request: Request) -> None:
    expected = _gateway(request).settings.operator_token.encode()
    token = bearer_token(request.headers.get("authorization", "")) or ""
    if not hmac.compare_digest(token.encode(), expected):
        raise ProblemError(
            401,
            "Unauthorized",
            "An operator bearer token is required.",
            headers={"WWW-Authenticate": 'Bearer realm="astratrade-operator"'},
        )


Operator = Annotated[None, Depends(require_operator)]


@router.get("/services")
async def services(request: Request, _: Operator) -> dict[str, Any]:
    """Every service's instances as discovery sees them, with balancer and breaker state."""
    gateway = _gateway(request)
    view = gateway.services_view()
    for name, entry in view.items():
        entry["breaker_retry_after"] = gateway.breakers[name].retry_after()
    return {"registry_stale": gateway.discovery.stale, "services": view}


@router.get("/audit")
async def audit(
    request: Request,
    _: Operator,
    subject: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Recorded audit events, newest first, for everyone or one subject."""
    entries = await _gateway(request).audit_trail.query(subject, limit)
    return {"subject": subject, "items": entries}
