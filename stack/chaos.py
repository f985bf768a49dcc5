"""Chaos mode's proxy topology: which named proxy sits on which network hop.

    gateway-n ── gateway_<instance> ──> <instance>          (instance port + 10000)
    <process> ── <process>_redis ─────> Redis               (process port + 8000)
    <instance> ─ <instance>_postgres ─> PostgreSQL          (instance port + 9000, when used)

Names follow Toxiproxy's `<client>_<upstream>` advice. `astra up --chaos` writes the
proxies of its actual topology to `<run_dir>/chaos/proxies.json` and starts the fault
proxy with `-config` on it; `chaos/proxies.json` (committed, checked by `make lint`) is
the default topology, in the same `-config` format the real Toxiproxy reads, and
`compose/chaos/proxies.json` the same proxies (names, listen ports) with the compose
network's addresses, for the compose chaos layer's real Toxiproxy:

    python -m stack.chaos generate [--check]

Monitoring processes are never proxied: the observer sees the faults, it does not
suffer them.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from stack.config import SERVICES, StackSettings

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "chaos" / "proxies.json"
COMPOSE_COMMITTED = ROOT / "compose" / "chaos" / "proxies.json"
COMPOSE_SERVICE_PORT = 8000  # stack/containers/roles.py SERVICE_PORT (no import: a layer up)
API_PORT = 8474  # Toxiproxy's; plus the port offset
# Listen port = the client's (or the instance's) own port, offset included, + this shift.
GATEWAY_SHIFT = 10_000
REDIS_SHIFT = 8_000
POSTGRES_SHIFT = 9_000
_MAX_PORT = 65_535


class ChaosConfigError(ValueError):
    """The topology cannot be built (a port out of range)."""


@dataclass(frozen=True)
class ProxySpec:
    name: str
    listen: str  # "127.0.0.1:18102"
    upstream: str  # "127.0.0.1:8102"

    @property
    def url(self) -> str:
        """The listen address as an http URL (what an instance registers)."""
        return f"http://{self.listen}"

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


def api_port(settings: StackSettings) -> int:
    return API_PORT + settings.port_offset


def is_postgres(url: str) -> bool:
    return urlsplit(url).scheme.split("+", 1)[0] in ("postgres", "postgresql")


def _address(url: str, default_port: int) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or default_port}"


def via(url: str, listen: str) -> str:
    """`url` with its host and port replaced by a proxy's `listen`; credentials kept."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{listen}" if userinfo else listen
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _listen(port: int) -> str:
    if port > _MAX_PORT:
        raise ChaosConfigError(
            f"a chaos proxy would listen on port {port}, above {_MAX_PORT}: "
            "lower ASTRA_PORT_OFFSET (proxies listen up to 10000 above the service ports)"
        )
    return f"127.0.0.1:{port}"


def proxies_for(
    settings: StackSettings, instances: Callable[[str], int] | None = None
) -> list[ProxySpec]:
    """Every proxy of this stack's topology, in start order (services, then gateways).

    `instances(service)` defaults to `settings.instances` (`ASTRA_INSTANCES_<svc>`).
    """
    count = instances or settings.instances
    redis = _address(settings.effective_redis_url, 6379)
    database = settings.database_url if is_postgres(settings.database_url) else ""
    specs: list[ProxySpec] = []
    for service in SERVICES:
        for index in range(1, count(service) + 1):
            port = settings.service_port(service, index)
            instance = f"{service}-{index}"
            upstream = f"127.0.0.1:{port}"
            specs.append(ProxySpec(f"gateway_{instance}", _listen(port + GATEWAY_SHIFT), upstream))
            specs.append(ProxySpec(f"{instance}_redis", _listen(port + REDIS_SHIFT), redis))
            if database:
                postgres = _address(database, 5432)
                specs.append(
                    ProxySpec(f"{instance}_postgres", _listen(port + POSTGRES_SHIFT), postgres)
                )
    for index in range(1, settings.gateway_replicas + 1):
        port = settings.gateway_port(index)
        specs.append(ProxySpec(f"gateway-{index}_redis", _listen(port + REDIS_SHIFT), redis))
    return specs


def toxiproxy_config(specs: Sequence[ProxySpec]) -> list[dict[str, object]]:
    """Toxiproxy's `-config` JSON (also `POST /populate`'s body)."""
    return [
        {"name": s.name, "listen": s.listen, "upstream": s.upstream, "enabled": True} for s in specs
    ]


def config_text(specs: Sequence[ProxySpec]) -> str:
    return json.dumps(toxiproxy_config(specs), indent=2) + "\n"


def default_specs() -> list[ProxySpec]:
    """The committed topology: one instance per service, one gateway, offset 0, our Redis."""
    settings = StackSettings(
        port_offset=0, gateway_replicas=1, redis_url="", redis_port=6390, database_url=""
    )
    return proxies_for(settings, instances=lambda _service: 1)


def compose_specs() -> list[ProxySpec]:
    """The committed topology as the compose chaos layer runs it (compose.chaos.yaml):
    the same names and listen ports, the compose network's addresses (Toxiproxy in its
    own container, each service one instance under its service name, Redis as `redis`)."""
    specs = []
    for spec in default_specs():
        upstream = "redis:6379"
        if spec.name.startswith("gateway_"):  # gateway_<service>-1 -> <service>:8000
            service = spec.name.removeprefix("gateway_").rsplit("-", 1)[0]
            upstream = f"{service}:{COMPOSE_SERVICE_PORT}"
        specs.append(ProxySpec(spec.name, f"0.0.0.0:{spec.port}", upstream))
    return specs


def generate(check: bool = False) -> int:
    """Write the committed topologies; with `check`, exit 1 (and show how) if one differs."""
    failed = 0
    for path, specs in ((COMMITTED, default_specs()), (COMPOSE_COMMITTED, compose_specs())):
        failed |= _generate(path, config_text(specs), check)
    return failed


def _generate(path: Path, text: str, check: bool) -> int:
    if check:
        current = path.read_text() if path.exists() else ""
        if current == text:
            return 0
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=f"{path} (committed)",
            tofile=f"{path} (generated)",
        )
        sys.stdout.writelines(diff)
        print(f"{path} is out of date: run `python -m stack.chaos generate`", file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.chaos", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write chaos/proxies.json and compose/chaos/proxies.json")
    gen.add_argument("--check", action="store_true", help="fail if the committed file differs")
    args = parser.parse_args(argv)
    return generate(check=args.check)


if __name__ == "__main__":
    sys.exit(main())
