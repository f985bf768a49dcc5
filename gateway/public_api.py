"""The public API, route by route: one declaration per route, read by every part of the edge.

Each route is declared once, as a `RouteSpec` on its endpoint (`@declare(RouteSpec(...))`):
method, template, whether it needs a token, its rate-limit policy, its audit action,
whether it may be retried with an `Idempotency-Key`, its timeout and its SLO class.
The endpoints are registered on an `APIRouter` that is never mounted: the proxy
forwards `/api/v1/{service}/...` to the services, which serve the same paths. From
the one table come:

- `PublicRoutes.resolve(method, path, service)`: the spec of a request, once, with the
  operator's overrides applied; the proxy reads the public rule, the limit, the audit,
  the retry rule and the timeout from it, and labels metrics and the access log with
  its template (`/api/v1/trading/orders/{order_id}`, never a raw path) and SLO class;
- `openapi_document(settings)`: the document at `GET /openapi.json`, with the
  bearer scheme on every route that is not public and problem+json errors;
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, NoReturn, TypeVar
from urllib.parse import unquote

from fastapi import APIRouter, Query
from fastapi.openapi.utils import get_openapi
from starlette.routing import compile_path

from gateway.config import (
    SERVICES,
    GatewaySettings,
    RateLimitRule,
    RateLimitSettings,
    UpstreamSettings,
)
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

PREFIX = "/api/v1/"

# What an SLO is kept for. Bounded on purpose: it labels the request metrics, and an
# SLO query selects a class, never a list of routes (a new route joins its class's SLO).
SloClass = Literal["read", "write", "auth"]
# How long a route's upstream call may take when its declaration does not say: four
# times the class's latency threshold for reads (a read later than 1 s has failed its
# user; the breaker and the stale cache take over from there), five times for logins
# (argon2 on a busy users service, bench/README.md) and ten for writes (an order is
# worth waiting for, and is retried only with its Idempotency-Key). Seconds; never more
# than the service's own timeout (`UpstreamSettings.attempt_timeout`).
CLASS_TIMEOUTS: dict[SloClass, float] = {"read": 1.0, "write": 5.0, "auth": 5.0}
_READS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """Everything the edge knows about one public route.

    @declare(RouteSpec("POST", "/api/v1/trading/orders", slo_class="write", policy="orders"))
    async def create_order(body: OrderCreate) -> OrderPublic: ...

    In the table `PublicRoutes` serves, `policy`, `rule` and `timeout` are the ones
    that apply (the operator's overrides from settings win over the declaration).
    """

    method: str
    template: str  # "/api/v1/{service}/...", as the service serves it
    slo_class: SloClass
    public: bool = False  # no token needed (one that is sent is verified all the same)
    policy: str = "default"  # the rate-limit policy: a `RateLimitSettings` rule by name
    # The policy's rule when settings name none, so a new policy is one declaration;
    # `ASTRA_RATE_LIMIT__POLICIES` still overrides it.
    rule: RateLimitRule | None = None
    audit: str | None = None  # the action in the audit trail, when it is significant
    # The request and answer bodies are kept for the audit entry: for account actions,
    # whose subject and username come from them, never from a bearer header.
    audit_bodies: bool = False
    # The service executes a retry with the same `Idempotency-Key` once, so a write may
    # be retried on another instance; any other write could be applied twice.
    idempotency_key: bool = False
    timeout: float | None = None  # total upstream seconds; None: the service's timeout
    declared: bool = True  # False: the stand-in for an undeclared path under a service
    service: str = field(init=False)

    def __post_init__(self) -> None:
        service = self.template.removeprefix(PREFIX).split("/", 1)[0]
        if not self.template.startswith(PREFIX) or not service:
            raise ValueError(f"{self.template!r} is not under {PREFIX}{{service}}/")
        object.__setattr__(self, "service", service)

    @property
    def key(self) -> str:
        """How settings name the route: "POST /api/v1/trading/orders"."""
        return f"{self.method} {self.template}"


router = APIRouter()
_TABLE: list[RouteSpec] = []

_F = TypeVar("_F", bound=Callable[..., Any])


def declare(spec: RouteSpec, *, status_code: int = 200) -> Callable[[_F], _F]:
    """Put `spec` in the route table and its endpoint (body, answer, docstring) in the
    OpenAPI document: the one place a public route is declared."""

    def add(endpoint: _F) -> _F:
        router.add_api_route(
            spec.template,
            endpoint,
            methods=[spec.method],
            status_code=status_code,
            tags=[spec.service],
        )
        _TABLE.append(spec)
        return endpoint

    return add


def _upstream() -> NoReturn:  # pragma: no cover - the proxy answers these paths
    raise RuntimeError("served by the service behind the gateway")


@declare(
    RouteSpec(
        "POST",
        "/api/v1/users/register",
        slo_class="auth",
        public=True,
        policy="auth",
        audit="register",
        audit_bodies=True,
    ),
    status_code=201,
)
async def register(body: UserCreate) -> UserPublic:
    """Create an account."""
    _upstream()


@declare(
    RouteSpec(
        "POST",
        "/api/v1/users/login",
        slo_class="auth",
        public=True,
        policy="auth",
        audit="login",
        audit_bodies=True,
    )
)
async def login(body: TokenCreate) -> TokenPublic:
    """Exchange username and password for a bearer access token."""
    _upstream()


@declare(RouteSpec("GET", "/api/v1/users/me", slo_class="read"))
async def me() -> UserPublic:
    """The caller's account."""
    _upstream()


@declare(RouteSpec("GET", "/api/v1/trading/markets", slo_class="read", public=True))
async def markets() -> list[MarketPublic]:
    """Tradable symbols and their current prices."""
    _upstream()


@declare(
    RouteSpec(
        "POST",
        "/api/v1/trading/orders",
        slo_class="write",
        policy="orders",
        audit="order",
        idempotency_key=True,
    ),
    status_code=201,
)
async def create_order(body: OrderCreate) -> OrderPublic:
    """Place a market order; it fills at once at the current price."""
    _upstream()


@declare(RouteSpec("GET", "/api/v1/trading/orders", slo_class="read"))
async def list_orders() -> list[OrderPublic]:
    """The caller's orders, newest first."""
    _upstream()


@declare(RouteSpec("GET", "/api/v1/trading/orders/{order_id}", slo_class="read"))
async def get_order(order_id: str) -> OrderPublic:
    """One of the caller's orders."""
    _upstream()


@declare(RouteSpec("GET", "/api/v1/trading/portfolio", slo_class="read"))
async def portfolio() -> PortfolioPublic:
    """The caller's cash, positions and equity at current prices."""
    _upstream()


@declare(RouteSpec("GET", "/api/v1/gamification/profile", slo_class="read"))
async def profile() -> ProfilePublic:
    """The caller's XP, level and achievements."""
    _upstream()


@declare(RouteSpec("GET", "/api/v1/gamification/leaderboard", slo_class="read", public=True))
async def leaderboard(limit: Annotated[int, Query(ge=1, le=100)] = 10) -> list[LeaderboardEntry]:
    """The users with the most XP, best first."""
    _upstream()


@declare(RouteSpec("GET", "/api/v1/nft/collection", slo_class="read"))
async def collection() -> list[NftPublic]:
    """The caller's reward tokens."""
    _upstream()


_NAME = r"^[A-Za-z0-9_-]+$"


@declare(RouteSpec("GET", "/api/v1/social/feed", slo_class="read", public=True))
async def feed(
    user: Annotated[str | None, Query(min_length=1, max_length=64, pattern=_NAME)] = None,
    cursor: Annotated[str | None, Query(min_length=1, max_length=512, pattern=_NAME)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> FeedPage:
    """Feed entries newest first, a page at a time (`next_cursor` for the next page)."""
    _upstream()


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


def _parse_prefixes(routes: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """("GET /api/v1/x/",) -> (("GET", "/api/v1/x"),)"""
    parsed = []
    for route in routes:
        method, _, path = route.strip().partition(" ")
        parsed.append((method.upper(), path.strip().rstrip("/")))
    return tuple(parsed)


def _below(prefixes: Iterable[tuple[str, str]], method: str, path: str) -> bool:
    """Whether `method path` is one of `prefixes` or below one (`path` canonical)."""
    for prefix_method, prefix in prefixes:
        if method == prefix_method and (path == prefix or path.startswith(prefix + "/")):
            return True
    return False


class PublicRoutes:
    """The route table, as the gateway's settings configure it.

    routes = PublicRoutes.of(settings)
    routes.resolve("POST", "/api/v1/users/login", "users")   # RouteSpec(policy="auth", ...)
    routes.resolve("GET", "/api/v1/users/elsewhere", "users")
    # RouteSpec("*", "/api/v1/users/{path}", slo_class="read", declared=False)
    routes.match("GET", "/api/v1/trading/orders/0190...", "trading")
    # "/api/v1/trading/orders/{order_id}"

    Paths are matched as `canonical_path` gives them. A route settings name that is not
    in the table, or a policy without a rule, fails here, at start, not per request.
    """

    def __init__(
        self,
        services: Iterable[str] = SERVICES,
        *,
        rate_limit: RateLimitSettings | None = None,
        upstream: UpstreamSettings | None = None,
        extra_public: Iterable[str] = (),
        specs: Iterable[RouteSpec] | None = None,  # the declared table; tests pass their own
    ) -> None:
        table = list(_TABLE if specs is None else specs)
        limits = rate_limit if rate_limit is not None else RateLimitSettings()
        timeouts = (upstream if upstream is not None else UpstreamSettings()).route_timeouts
        self._extra_public = _parse_prefixes(extra_public)
        known = {spec.key for spec in table}
        for name, overrides in (("rate_limit.routes", limits.routes), ("route_timeouts", timeouts)):
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise ValueError(f"{name} names routes that are not declared: {unknown}")
        default_rules = _declared_rules(table)

        def rule_of(policy: str, where: str) -> RateLimitRule:
            rule = limits.rule(policy) or default_rules.get(policy)
            if rule is None:
                raise ValueError(f"{where}: no rate-limit rule {policy!r} in settings or specs")
            return rule

        self._by_service: dict[str, list[tuple[re.Pattern[str], RouteSpec]]] = {}
        self._by_key: dict[str, RouteSpec] = {}
        for declared in table:
            policy = limits.routes.get(declared.key, declared.policy)
            spec = replace(
                declared,
                policy=policy,
                rule=rule_of(policy, declared.key),
                timeout=timeouts.get(
                    declared.key,
                    declared.timeout
                    if declared.timeout is not None
                    else CLASS_TIMEOUTS[declared.slo_class],
                ),
            )
            if spec.key in self._by_key:
                raise ValueError(f"{spec.key} is declared twice")
            regex = compile_path(spec.template)[0]
            self._by_service.setdefault(spec.service, []).append((regex, spec))
            self._by_key[spec.key] = spec
        # Any other path under a service: one label per service, the default policy, not
        # public, and the class its method suggests (a GET reads, anything else writes).
        default = rule_of("default", "undeclared routes")
        self._undeclared = {
            (service, reads): RouteSpec(
                "*",
                f"{PREFIX}{service}/{{path}}",
                slo_class="read" if reads else "write",
                rule=default,
                declared=False,
            )
            for service in services
            for reads in (True, False)
        }

    @classmethod
    def of(cls, settings: GatewaySettings) -> PublicRoutes:
        return cls(
            settings.services,
            rate_limit=settings.rate_limit,
            upstream=settings.upstream,
            extra_public=settings.public_routes,
        )

    def route(self, method: str, path: str, service: str) -> RouteSpec | None:
        """The declared route `method path` matches, if any."""
        for regex, spec in self._by_service.get(service, ()):
            if spec.method == method and regex.match(path):
                return spec
        return None

    def resolve(self, method: str, path: str, service: str) -> RouteSpec:
        """The spec of one request to a configured `service`: declared, or the stand-in."""
        spec = self.route(method, path, service) or self._undeclared[(service, method in _READS)]
        if not spec.public and self._extra_public and _below(self._extra_public, method, path):
            spec = replace(spec, public=True)
        return spec

    def match(self, method: str, path: str, service: str) -> str | None:
        spec = self.route(method, path, service)
        return None if spec is None else spec.template

    def named(self, key: str) -> RouteSpec | None:
        """The declared route settings call `key` ("POST /api/v1/trading/orders")."""
        return self._by_key.get(key)

    def is_public(self, spec: RouteSpec, path: str) -> bool:
        """Declared public, or below one of the extra public prefixes of the settings."""
        return spec.public or _below(self._extra_public, spec.method, path)

    def all(self) -> list[RouteSpec]:
        return list(self._by_key.values())


def _declared_rules(table: Iterable[RouteSpec]) -> dict[str, RateLimitRule]:
    """Policy -> the default rule a spec declared for it; two different ones are an error."""
    rules: dict[str, RateLimitRule] = {}
    for spec in table:
        if spec.rule is None:
            continue
        if rules.setdefault(spec.policy, spec.rule) != spec.rule:
            raise ValueError(f"policy {spec.policy!r} is declared with two different rules")
    return rules


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
    routes = PublicRoutes.of(settings)
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            spec = routes.named(f"{method.upper()} {path}")
            assert spec is not None, f"{method} {path} is in the document but not the table"
            is_public = routes.is_public(spec, path)
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
