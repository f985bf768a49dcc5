"""Operator endpoints: the services view and the audit trail, behind the operator token.

The token is compared in constant time and never logged; a missing or wrong one
gets the same 401, so the answer says nothing about how close a guess was.

Guesses are rate limited per client address (the `operator` rule): a wrong or
missing token spends a whole token of the budget. A right one is checked against
the same budget too, so once an address has guessed too often it gets the same
429 whatever it sends (otherwise a 200 among the 429s would give the right guess
away, and guessing would go on at full speed); the right token only spends a
sliver (`_right_token_rule`), so an operator is never throttled by their own use.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from backbone.auth import bearer_token, challenge
from backbone.service.problems import ProblemError
from gateway.config import RateLimitRule
from gateway.runtime import Gateway

router = APIRouter(prefix="/api/v1", tags=["operator"])


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


# A right token's cost as a fraction of a guess's (see `_right_token_rule`).
_SLIVER = 10_000


def _right_token_rule(rule: RateLimitRule) -> RateLimitRule:
    """The same GCRA threshold as `rule` at 1/_SLIVER of the cost.

    With T = 1/rate and b = burst, a guess is allowed while TAT - now <= T*(b-1).
    With T' = T/K and b' = K*(b-1)+1, a check is allowed while
    TAT + T' - now <= T'*b' = T*(b-1) + T', i.e. at exactly the same moment, and
    Retry-After comes out the same; it only moves TAT by T/K.
    """
    return RateLimitRule(rate=rule.rate * _SLIVER, burst=_SLIVER * (rule.burst - 1) + 1)


async def require_operator(request: Request) -> None:
    gateway = _gateway(request)
    expected = gateway.settings.operator_token.encode()
    token = bearer_token(request.headers.get("authorization")) or ""
    right = hmac.compare_digest(token.encode(), expected)
    rule = gateway.settings.rate_limit.operator
    address = request.client.host if request.client else ""
    decision = await gateway.limiter.check(
        "operator", _right_token_rule(rule) if right else rule, f"ip:{address}"
    )
    if not decision.allowed:
        raise ProblemError(
            429,
            "Too many requests",
            f"Too many operator attempts from this address; retry in {decision.retry_after}s.",
            headers={"Retry-After": str(decision.retry_after)},
        )
    if not right:
        raise ProblemError(
            401,
            "Unauthorized",
            "An operator bearer token is required.",
            headers={"WWW-Authenticate": challenge(realm="astratrade-operator")},
        )


Operator = Annotated[None, Depends(require_operator)]


async def operator_detail(request: Request) -> bool:
    """For routes that answer anyone: False without credentials, True with the operator
    token; any other credential is refused (and counted) as on the operator routes."""
    if "authorization" not in request.headers:
        return False
    await require_operator(request)
    return True


def failing_checks(checks: dict[str, Any]) -> list[str]:
    """The names of the readiness checks that fail, and nothing about the instances."""
    failing = [] if checks.get("redis") == "ok" else ["redis"]
    for service, view in checks.get("services", {}).items():
        if not view.get("instances"):
            failing.append(f"services.{service}")
    return failing


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
