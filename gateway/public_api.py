"""The public API, route by route: the gateway's OpenAPI document, route templates, audits.

The routes are declared on an `APIRouter` that is never mounted: the proxy
forwards `/api/v1/{service}/...` to the services, which serve the same paths.
The declarations give three things:

- `openapi_document(settings)`: the document at `GET /openapi.json`, with the
  bearer scheme on every route that needs a token and problem+json errors;
- `PublicRoutes.route(method, path, service)`: the `EdgeRoute` of a request: its
  template (`/api/v1/trading/orders/{order_id}`), which labels metrics and the
  access log instead of an unbounded raw path, its rate-limit policy and its audit
  action (`@edge(policy=..., audit=...)` on the declaration);
- `canonical_path(raw_path)`: the one form of a path every decision is made on.

Paths are canonicalised before anything is decided: empty segments (`a//b`, a
trailing `/`) are dropped, so `/api/v1/users/login/` *is* `/api/v1/users/login`
(its policy, its public rule, its audit action) and is forwarded as such. A path
that could mean something else to another parser (`.` or `..` segments, an encoded
`/` or `\\` inside a segment, a leading `//`) is refused instead: no client that
follows RFC 3986 sends one, and guessing is how an edge and a service come to
disagree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn, TypeVar
from urllib.parse import unquote

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

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class _Edge:
    policy: str
    audit: str | None


_EDGE: dict[object, _Edge] = {}


def edge(*, policy: str = "default", audit: str | None = None) -> Callable[[_F], _F]:
    """What the edge does with a route besides forwarding it: the rate-limit policy
    (a rule of `RateLimitSettings`) and the audit action, if it is a significant one."""

    def mark(endpoint: _F) -> _F:
        _EDGE[endpoint] = _Edge(policy, audit)
        return endpoint

    return mark


def _upstream() -> NoReturn:  # pragma: no cover - the proxy answers these paths
    raise RuntimeError("served by the service behind the gateway")


@router.post("/api/v1/users/register", status_code=201, tags=["users"])
@edge(policy="auth", audit="register")
async def register(body: UserCreate) -> UserPublic:
    """Create an account."""
    _upstream()


@router.post("/api/v1/users/login", tags=["users"])
@edge(policy="auth", audit="login")
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
@edge(policy="orders", audit="order")
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
class EdgeRoute:
    """A declared route as the edge uses it."""

    method: str
    template: str
    policy: str = "default"  # the rule of `RateLimitSettings` that limits it
    audit: str | None = None  # the action in the audit trail, when it is significant
    regex: re.Pattern[str] | None = None


_SEPARATORS = ("/", "\\")


def canonical_path(raw_path: bytes) -> tuple[str, bytes] | None:
    """(decoded, encoded) canonical path, or None when the path is ambiguous.

    canonical_path(b"/api/v1//users/login/")  # ("/api/v1/users/login", b"/api/v1/users/login")
    canonical_path(b"/api/v1/x/../users")     # None
    """
    if raw_path.startswith(b"//"):
        # Read as an authority by URL parsers (`//host/path`), and it would slip past
        # the prefix checks of the outer layers (`/api/` gets no-store): ambiguous.
        return None
    raw_segments = [s for s in raw_path.split(b"/") if s]
    decoded = []
    for raw in raw_segments:
        # As uvicorn decodes `scope["path"]`, so the decision and the service agree.
        segment = unquote(raw.decode("latin-1"))
        if segment in (".", "..") or any(sep in segment for sep in _SEPARATORS):
            return None
        decoded.append(segment)
    return "/" + "/".join(decoded), b"/" + b"/".join(raw_segments)


class PublicRoutes:
    """routes = PublicRoutes()
    routes.route("POST", "/api/v1/users/login", "users")   # EdgeRoute(policy="auth", audit="login")
    routes.match("GET", "/api/v1/trading/orders/0190...", "trading")
    # "/api/v1/trading/orders/{order_id}"

    Paths are matched as `canonical_path` gives them.
    """

    def __init__(self) -> None:
        self._by_service: dict[str, list[EdgeRoute]] = {}
        for route in router.routes:
            assert isinstance(route, APIRoute)
            service = route.path.split("/")[3]
            rule = _EDGE.get(route.endpoint, _Edge("default", None))
            for method in route.methods or ():
                self._by_service.setdefault(service, []).append(
                    EdgeRoute(method, route.path, rule.policy, rule.audit, route.path_regex)
                )

    def route(self, method: str, path: str, service: str) -> EdgeRoute | None:
        for route in self._by_service.get(service, ()):
            if route.method == method and route.regex is not None and route.regex.match(path):
                return route
        return None

    def match(self, method: str, path: str, service: str) -> str | None:
        route = self.route(method, path, service)
        return None if route is None else route.template

    def all(self) -> list[EdgeRoute]:
        return [route for routes in self._by_service.values() for route in routes]


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
