"""The compose files, offline: valid against the Compose Specification, merged too, and
held to the stack's rules (healthcheck, memory limit, pinned image, restart policy,
known dependencies, ports on the published address only, no secret in a file)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack.containers.roles import ROLES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
FILES = [
    COMPOSE / "compose.yaml",
    COMPOSE / "compose.observability.yaml",
    COMPOSE / "compose.chaos.yaml",
    COMPOSE / "compose.load.yaml",
]
ENV = dict(
    line.split("=", 1)
    for line in (COMPOSE / ".env").read_text().splitlines()
    if line and not line.startswith("#")
)
ONE_SHOTS = {"bootstrap", "monitoring-config"}
DOCKER_COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(path)],
        capture_output=True, text=True,
    )  # fmt: skip


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_each_file_is_valid_compose_spec(path: Path) -> None:
    result = _check_jsonschema(path)
    assert result.returncode == 0, result.stdout + result.stderr


def _merged(tmp_path: Path, *files: Path) -> dict[str, Any]:
    if not Path(DOCKER_COMPOSE).exists():
        pytest.skip("docker-compose (Debian's, 1.29) is not installed: cannot merge the files")
    argv = [DOCKER_COMPOSE, "--env-file", str(COMPOSE / ".env")]
    for f in files:
        argv += ["-f", str(f)]
    result = subprocess.run([*argv, "config"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "merged.yaml"
    out.write_text(result.stdout)
    valid = _check_jsonschema(out)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    return _load(out)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every layer merged, as `docker-compose config` resolves them (.env applied)."""
    return _merged(tmp_path_factory.mktemp("compose"), *FILES)


def test_the_merged_stack_is_valid_and_has_every_process(stack: dict[str, Any]) -> None:
    services = set(stack["services"])
    processes = {r for r in ROLES if r not in {"sd", "faultproxy", "locust"}}
    expected = {"redis", "gateway", "bootstrap", "sd", "prometheus", "alertmanager", "grafana",
                "jaeger", "blackbox", "redis-exporter", "toxiproxy", "locust-master",
                "locust-worker", *processes}  # fmt: skip
    assert expected <= services, expected - services


def test_every_long_running_service_is_held_to_the_rules(stack: dict[str, Any]) -> None:
    problems = []
    for name, service in stack["services"].items():
        image = service.get("image", "")
        if not re.fullmatch(r"[\w./-]+:[\w.-]+", image) or image.endswith(":latest"):
            problems.append(f"{name}: image {image!r} is not pinned by tag")
        if not service.get("mem_limit"):
            problems.append(f"{name}: no memory limit")
        if name in ONE_SHOTS:
            if service.get("restart") != "no":
                problems.append(f"{name}: a one-shot must not restart")
            continue
        if "healthcheck" not in service or service["healthcheck"].get("disable"):
            problems.append(f"{name}: no healthcheck")
        if service.get("restart") not in {"unless-stopped", "always", "on-failure"}:
            problems.append(f"{name}: restart policy {service.get('restart')!r}")
        for dependency, how in (service.get("depends_on") or {}).items():
            if dependency not in stack["services"]:
                problems.append(f"{name}: depends on unknown {dependency}")
            one_shot = dependency in ONE_SHOTS
            want = "service_completed_successfully" if one_shot else "service_healthy"
            if how.get("condition") != want:
                problems.append(f"{name}: depends on {dependency} with {how.get('condition')}")
    assert not problems, "\n".join(problems)


def test_ports_are_published_on_the_documented_address_only(stack: dict[str, Any]) -> None:
    published = {}
    for name, service in stack["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, str):  # docker-compose 1.29 prints "ip:published:target"
                host_ip, host_port, target = port.split("/")[0].split(":")
                port = {"host_ip": host_ip, "published": host_port, "target": target}
            assert port["host_ip"] == ENV["ASTRA_PUBLISH_ADDRESS"] == "127.0.0.1", (name, port)
            published[name] = (int(port["published"]), int(port["target"]))
    assert published["gateway"] == (int(ENV["ASTRA_GATEWAY_PUBLISH_PORT"]), 8080)
    # The services themselves are reached through the gateway only.
    assert not {"users", "trading", "gamification", "nft", "social", "redis"} & set(published)
    readme = (ROOT / "README.md").read_text()
    for name, (host_port, _) in published.items():
        assert f"127.0.0.1:{host_port}" in readme, f"README does not say where {name} listens"


def test_no_secret_is_in_a_committed_file() -> None:
    committed = [*FILES, COMPOSE / ".env", COMPOSE / "compose.test.yaml"]
    text = "\n".join(p.read_text() for p in committed)
    for word in ("PASSWORD=", "TOKEN=", "password:", "token:"):
        assert word not in text.replace("POSTGRES_PASSWORD_FILE", ""), word
    assert "ASTRA_REGISTRY__TOKEN" not in text
    assert "ASTRA_GATEWAY_OPERATOR_TOKEN" not in text


def test_every_image_tag_lives_in_the_env_file() -> None:
    for path in FILES:
        for match in re.finditer(r"^\s+image:\s*(\S+)", path.read_text(), re.MULTILINE):
            assert match.group(1).startswith("${"), f"{path.name}: {match.group(1)} not from .env"
