"""The compose stack on a real engine: built, brought up, used, broken, restarted.

A private dockerd (tests/support/engine.py) builds the project's image on the official
slim Python, or, with no registry reachable, on a local Debian base made offline; the
compose files users get, plus the test overlay that swaps only the images that cannot
be pulled (compose/compose.test.yaml). Asserted through the published ports on
127.0.0.1: every container healthy, each after what it depends on; the README's try-it
flow through the gateway container; every Prometheus target up; a killed service
answered honestly and restarted by its policy; `down` then `up` keeps Redis's data.
The host is restored after (containers, daemon, bridges, iptables, ip_forward).
Skips with the reason where the machine cannot run an engine (not root, no apt).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.engine import LOCAL_BASE, ROOT, DockerEngine, EngineUnavailable, HostState

pytestmark = [pytest.mark.integration, pytest.mark.containers, pytest.mark.timeout(1500)]

COMPOSE = ROOT / "compose"
ENV = dict(
    line.split("=", 1)
    for line in (COMPOSE / ".env").read_text().splitlines()
    if line and not line.startswith("#")
)
GATEWAY = f"http://127.0.0.1:{ENV['ASTRA_GATEWAY_PUBLISH_PORT']}"
PROMETHEUS = f"http://127.0.0.1:{ENV['ASTRA_PROMETHEUS_PUBLISH_PORT']}"
# What the test starts (their dependencies come with them): the core and the parts of
# the observability layer that have a Debian package; never Grafana or Jaeger.
STARTED = ["gateway", "prometheus", "alertmanager", "blackbox", "redis-exporter"]
RESULTS = ROOT / "var" / "containers" / "last-run.json"  # figures for bench/README.md
PASSWORD = "correct horse 1"


class Up:
    def __init__(self, engine: DockerEngine, files: list[Path], figures: dict[str, Any]) -> None:
        self.engine, self.files, self.figures = engine, files, figures

    def compose(self, *args: str, check: bool = True) -> str:
        return self.engine.compose(self.files, *args, check=check).stdout

    def containers(self) -> dict[str, dict[str, Any]]:
        """`docker inspect` of every container of the project, by compose service."""
        ids = self.compose("ps", "-q").split()
        if not ids:
            return {}
        found = json.loads(self.engine.docker("inspect", *ids).stdout)
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in found}

    def wait_healthy(self, timeout: float = 300) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            containers = self.containers()
            waiting = {
                name: c["State"].get("Health", {}).get("Status", c["State"]["Status"])
                for name, c in containers.items()
                if c["State"].get("Health", {}).get("Status") != "healthy"
                and name not in {"bootstrap", "monitoring-config"}
            }
            if containers and not waiting:
                return containers
            if time.monotonic() > deadline:
                logs = self.compose("logs", "--tail", "30", check=False)
                raise AssertionError(f"not healthy in {timeout:g} s: {waiting}\n{logs[-4000:]}")
            time.sleep(1)


def _alice(http: httpx.Client) -> dict[str, str]:
    """alice's bearer header (the account the try-it test registered)."""
    login = http.post("/api/v1/users/login", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _when(stamp: str) -> float:
    """Docker's RFC 3339 nanosecond timestamps as epoch seconds."""
    head, _, rest = stamp.partition(".")
    fraction = rest.rstrip("Z").split("+")[0][:6] or "0"
    return datetime.fromisoformat(head + "+00:00").timestamp() + float(f"0.{fraction}")


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    before = HostState.read()
    try:
        engine_cm = DockerEngine.start(tmp_path_factory.mktemp("engine"))
        engine = engine_cm.__enter__()
    except EngineUnavailable as e:
        pytest.skip(f"no container engine on this machine: {e}")
    figures: dict[str, Any] = {}
    try:
        started = time.monotonic()
        base = engine.base_image(ENV["BASE_IMAGE"])
        figures["base_image"] = base
        figures["base_seconds"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        engine.docker(
            "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
            "-f", str(COMPOSE / "Dockerfile"), "-t", ENV["ASTRA_IMAGE"], str(ROOT),
            timeout=1200,
        )  # fmt: skip
        figures["cold_build_seconds"] = round(time.monotonic() - started, 1)
        size = engine.docker("image", "inspect", "-f", "{{.Size}}", ENV["ASTRA_IMAGE"]).stdout
        figures["image_bytes"] = int(size.strip())
        files = [COMPOSE / "compose.yaml", COMPOSE / "compose.observability.yaml"]
        if base == LOCAL_BASE:
            files.append(COMPOSE / "compose.test.yaml")
        stack = Up(engine, files, figures)
        started = time.monotonic()
        stack.compose("up", "-d", *STARTED)
        stack.wait_healthy()
        figures["up_to_healthy_seconds"] = round(time.monotonic() - started, 1)
        yield stack
    finally:
        with_files = locals().get("stack")
        if isinstance(with_files, Up):
            with_files.compose("down", "-v", "--timeout", "20", check=False)
        engine_cm.__exit__(None, None, None)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    after = HostState.read()
    assert after.links == before.links, "the engine left network links behind"
    assert after.ip_forward == before.ip_forward
    for tool, rules in after.iptables.items():  # no chain or rule of dockerd's left
        left = [line for line in rules.splitlines() if "DOCKER" in line or "br-" in line]
        had = [line for line in before.iptables.get(tool, "").splitlines() if "DOCKER" in line]
        assert len(left) <= len(had), (tool, left[:5])


def test_every_container_is_healthy_after_what_it_depends_on(up: Up) -> None:
    containers = up.wait_healthy()
    merged = yaml.safe_load(up.compose("config"))
    for name, service in merged["services"].items():
        if name not in containers:
            continue
        started = _when(containers[name]["State"]["StartedAt"])
        for dependency, how in (service.get("depends_on") or {}).items():
            if how.get("condition") != "service_healthy" or dependency not in containers:
                continue
            log = containers[dependency]["State"]["Health"]["Log"]
            passed = [_when(entry["End"]) for entry in log if entry["ExitCode"] == 0]
            assert passed, f"{dependency}: no passing health check"
            assert _when(containers[dependency]["State"]["StartedAt"]) < started, name
            if len(log) < 5:  # Docker keeps the last five checks: the first is still here
                assert min(passed) <= started, f"{name} started before {dependency} was healthy"


def test_the_try_it_flow_works_through_the_gateway_container(up: Up) -> None:
    with httpx.Client(base_url=GATEWAY, timeout=10) as http:
        body = {"username": "alice", "email": "alice@example.com", "password": PASSWORD}
        assert http.post("/api/v1/users/register", json=body).status_code == 201
        login = http.post("/api/v1/users/login", json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        symbol = http.get("/api/v1/trading/markets").json()[0]["symbol"]
        order = http.post(
            "/api/v1/trading/orders",
            json={"symbol": symbol, "side": "buy", "quantity": "2"},
            headers={**auth, "Idempotency-Key": "first-order"},
        )
        assert order.status_code == 201, order.text
        again = http.post(
            "/api/v1/trading/orders",
            json={"symbol": symbol, "side": "buy", "quantity": "2"},
            headers={**auth, "Idempotency-Key": "first-order"},
        )
        assert again.json()["order_id"] == order.json()["order_id"]  # executed once
        deadline = time.monotonic() + 30
        while True:
            profile = http.get("/api/v1/gamification/profile", headers=auth).json()
            nfts = http.get("/api/v1/nft/collection", headers=auth).json()
            feed = http.get("/api/v1/social/feed", params={"user": "alice", "limit": 50}).json()
            kinds = {item["kind"] for item in feed.get("items", [])}
            if profile.get("xp", 0) > 0 and nfts and {"trade", "achievement", "nft"} <= kinds:
                break
            assert time.monotonic() < deadline, (profile, nfts, kinds)
            time.sleep(0.5)
        assert [n["achievement"] for n in nfts] == ["first_trade"]
        forged = http.get("/api/v1/trading/portfolio", headers={"X-User-ID": "1"})
        assert forged.status_code == 401
        assert forged.headers["content-type"].startswith("application/problem+json")


def test_prometheus_in_its_container_has_every_target_up(up: Up) -> None:
    deadline = time.monotonic() + 90
    with httpx.Client(base_url=PROMETHEUS, timeout=5) as http:
        while True:
            targets = http.get("/api/v1/targets").json()["data"]["activeTargets"]
            jobs = {t["labels"]["job"] for t in targets}
            down = [(t["labels"].get("instance"), t["lastError"]) for t in targets
                    if t["health"] != "up"]  # fmt: skip
            astra = [t for t in targets if t["labels"]["job"] == "astra"]
            services = {t["labels"].get("service") for t in astra}
            every = {"gateway", "users", "trading", "gamification", "nft", "social"} <= services
            if not down and every and {"astra", "redis", "blackbox", "monitoring"} <= jobs:
                return
            assert time.monotonic() < deadline, (down, services, jobs)
            time.sleep(1)


def test_a_killed_service_is_answered_honestly_and_restarted(up: Up) -> None:
    trading = up.containers()["trading"]
    restarts = trading["RestartCount"]
    # A crash, not an operator's stop (`docker kill` counts as a manual stop, which no
    # restart policy undoes): SIGKILL to the service process under the container's tini.
    init = trading["State"]["Pid"]
    (child,) = Path(f"/proc/{init}/task/{init}/children").read_text().split()
    os.kill(int(child), signal.SIGKILL)
    honest = set()
    with httpx.Client(base_url=GATEWAY, timeout=10) as http:
        auth = _alice(http)
        deadline = time.monotonic() + 120
        while True:
            answer = http.get("/api/v1/trading/portfolio", headers=auth)
            if answer.status_code >= 500:
                assert answer.status_code in {502, 503, 504}, answer.text
                assert answer.headers["content-type"].startswith("application/problem+json")
                assert "Retry-After" in answer.headers
                honest.add(answer.status_code)
            now = up.containers()["trading"]
            healthy = now["State"].get("Health", {}).get("Status") == "healthy"
            if now["RestartCount"] > restarts and healthy and answer.status_code == 200:
                break
            assert time.monotonic() < deadline, (now["State"], answer.status_code)
            time.sleep(0.5)
    up.figures["trading_restart_honest_statuses"] = sorted(honest)


def test_down_then_up_keeps_the_data(up: Up) -> None:
    with httpx.Client(base_url=GATEWAY, timeout=10) as http:
        auth = _alice(http)
        orders = http.get("/api/v1/trading/orders", headers=auth).json()
        xp = http.get("/api/v1/gamification/profile", headers=auth).json()["xp"]
    up.compose("down", "--timeout", "20")  # volumes kept
    up.compose("up", "-d", *STARTED)
    up.wait_healthy()
    with httpx.Client(base_url=GATEWAY, timeout=10) as http:
        auth = _alice(http)  # the account (and the signing key) kept
        assert http.get("/api/v1/trading/orders", headers=auth).json() == orders
        assert http.get("/api/v1/gamification/profile", headers=auth).json()["xp"] == xp
        # The groups resume where they were: a new order is applied once, after the old.
        symbol = http.get("/api/v1/trading/markets").json()[0]["symbol"]
        new = http.post(
            "/api/v1/trading/orders",
            json={"symbol": symbol, "side": "buy", "quantity": "1"},
            headers={**auth, "Idempotency-Key": "after-restart"},
        )
        assert new.status_code == 201, new.text
        deadline = time.monotonic() + 30
        while http.get("/api/v1/gamification/profile", headers=auth).json()["xp"] <= xp:
            assert time.monotonic() < deadline, "the order after the restart got no XP"
            time.sleep(0.5)
