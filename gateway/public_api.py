"""The public API, route by route: the gateway's OpenAPI document, route templates, audits.

The routes are declared on an `APIRouter` that is never mounted: the proxy
forwards `/api/v1/{service}/...` to the services, which serve the same paths.
The declarations give three things:

- `openapi_document(settings)`: the document at `GET /openapi.json`, with the
  bearer scheme on every route that needs a token and problem+json errors;
- `PublicRoutes.match(method, path)`: the template (`/api/v1/trading/orders/{order_id}`)
  that labels metrics and the access log, instead of an unbounded raw path;
- `AUDITED`: which routes are significant actions, published as audit events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Query
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from gateway.auth import Authenticator
from gateway.config import GatewaySettings
from gateway.schemas import (
    FeedPage,
    LeaderboardEntry,
    MarketPublic,
    NftPublic,
    OrderCreate,
    OrderPublic,
    PortfolioPublic,
    Problem,
    ProfilePublic,
    TokenCreate,
    TokenPublic,
    UserCreate,
    UserPublic,
)

router = APIRouter()

# (method, template) -> action name in the audit trail.
AUDITED = {
    ("POST", "/api/v1/users/register"): "register",
    ("POST", "/api/v1/users/login"): "login",
    ("POST", "/api/v1/trading/orders"): "order",
}


def _upstream() -> NoReturn:  # pragma: no cover - the proxy answers these paths
    raise RuntimeError("served by the service behind the gateway")


@router.post("/api/v1/users/register", status_code=201, tags=["users"])
async def register(body: UserCreate) -> UserPublic:
    """Create an account."""
    _upstream()


@router.post("/api/v1/users/login", tags=["users"])
async def login(body: TokenCreate) -> TokenPublic:
    """Exchange username and password for a bearer access token."""
    _upstream()


@router.get("/api/v1/users/me", tags=["users"])
async def me() -> UserPublic:
    """The caller's account."""
    _upstream()


@router.get("/api/v1/trading/markets", tags=["trading"])
async def markets() -> list[MarketPublic]:
    """Tradable symbols and their current prices."""
    _upstream()


@router.post("/api/v1/trading/orders", status_code=201, tags=["trading"])
async def create_order(body: OrderCreate) -> OrderPublic:
    """Place a market order; it fills at once at the current price."""
    _upstream()


@router.get("/api/v1/trading/orders", tags=["trading"])
async def list_orders() -> list[OrderPublic]:
    """The caller's orders, newest first."""
    _upstream()


@router.get("/api/v1/trading/orders/{order_id}", tags=["trading"])
async def get_order(order_id: str) -> OrderPublic:
    """One of the caller's orders."""
    _upstream()


@router.get("/api/v1/trading/portfolio", tags=["trading"])
async def portfolio() -> PortfolioPublic:
    """The caller's cash, positions and equity at current prices."""
    _upstream()


@router.get("/api/v1/gamification/profile", tags=["gamification"])
async def profile() -> ProfilePublic:
    """The caller's XP, level and achievements."""
    _upstream()


@router.get("/api/v1/gamification/leaderboard", tags=["gamification"])
async def leaderboard(limit: Annotated[int, Query(ge=1, le=100)] = 10) -> list[LeaderboardEntry]:
    """The users with the most XP, best first."""
    _upstream()


@router.get("/api/v1/nft/collection", tags=["nft"])
async def collection() -> list[NftPublic]:
    """The caller's reward tokens."""
    _upstream()


_NAME = r"^[A-Za-z0-9_-]+$"


@router.get("/api/v1/social/feed", tags=["social"])
async def feed(
    user: Annotated[str | None, Query(min_length=1, max_length=64, pattern=_NAME)] = None,
    cursor: Annotated[str | None, Query(min_length=1, max_length=512, pattern=_NAME)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> FeedPage:
    """Feed entries newest first, a page at a time (`next_cursor` for the next page)."""
    _upstream()


@dataclass(frozen=True, slots=True)
class _Template:
    method: str
    path: str
    regex: re.Pattern[str]


class PublicRoutes:
    """routes = PublicRoutes()
    routes.match("GET", "/api/v1/trading/orders/0190...")  # "/api/v1/trading/orders/{order_id}"
    """

    def __init__(self) -> None:
        self._by_service: dict[str, list[_Template]] = {}
        for route in router.routes:
            assert isinstance(route, APIRoute)
            service = route.path.split("/")[3]
            for method in route.methods or ():
                self._by_service.setdefault(service, []).append(
                    _Template(method, route.path, route.path_regex)
                )

    def match(self, method: str, path: str, service: str) -> str | None:
        for template in self._by_service.get(service, ()):
            if template.method == method and template.regex.match(path):
                return template.path
        return None


_PROBLEMS = {
    "401": "No valid bearer token (`WWW-Authenticate` says why).",
    "403": "Not allowed.",
    "413": "The request body is too large.",
    "422": "The request does not fit the schema.",
    "429": "Rate limited; `Retry-After` says when to try again.",
    "502": "The service could not be reached.",
    "503": "The service is unavailable; `Retry-After` says when to try again.",
    "504": "The service did not answer in time.",
}


def openapi_document(settings: GatewaySettings) -> dict[str, Any]:
    """The public API as OpenAPI 3.1: bearer auth where needed, problem+json errors."""
    doc = get_openapi(
        title="AstraTrade API",
        version=settings.version,
        description=(
            "The public API, served through the gateway. Send `Authorization: Bearer "
            "<access_token>` from `POST /api/v1/users/login`; a token that is sent is "
            "always verified. Errors are `application/problem+json` (RFC 9457)."
        ),
        routes=router.routes,
        servers=[{"url": settings.public_url}],
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    doc["components"]["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    public = Authenticator.parse_routes(settings.public_routes)
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            is_public = Authenticator.matches(public, method.upper(), path)
            # Public routes take a token too (it is verified when sent).
            operation["security"] = [{}, {"bearerAuth": []}] if is_public else [{"bearerAuth": []}]
            responses = operation["responses"]
            responses.pop("422", None)  # FastAPI's HTTPValidationError; ours is a problem
            wanted = ["429", "502", "503", "504"]
            if "requestBody" in operation or operation.get("parameters"):
                wanted.append("422")
            if not is_public:
                wanted.append("401")
            if "requestBody" in operation:
                wanted.append("413")
            for code in sorted(wanted):
                responses[code] = {
                    "description": _PROBLEMS[code],
                    "content": {"application/problem+json": {"schema": problem}},
                }
            operation["operationId"] = f"{method}_{path.strip('/').replace('/', '_')}".replace(
                "{", ""
            ).replace("}", "")
    return doc
