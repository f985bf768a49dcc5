"""The monitoring processes `astra up` runs after the gateway, and their configs.

    monitoring/*.yml (templates) ── render(ports, paths) ──> <run_dir>/monitoring/
    alerts/*.yml ───────────────────────── copy ──────────> <run_dir>/monitoring/rules/

    sd (registry -> targets, alert sink) · redis-exporter · blackbox · alertmanager · prometheus

Each binary is optional: a missing one is skipped with a note naming the Debian
package, so `make up` works on a machine that has only Redis.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template
from urllib.parse import unquote, urlsplit

from stack.config import StackSettings
from stack.secrets import StackSecrets
from stack.supervisor import Child, python_module

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "monitoring"
RULES = ROOT / "alerts"


@dataclass(frozen=True)
class Binary:
    name: str  # the process name in the stack table
    executable: str
    package: str  # Debian package that provides it


BINARIES = {
    "prometheus": Binary("prometheus", "prometheus", "prometheus"),
    "alertmanager": Binary("alertmanager", "prometheus-alertmanager", "prometheus-alertmanager"),
    "redis-exporter": Binary(
        "redis-exporter", "prometheus-redis-exporter", "prometheus-redis-exporter"
    ),
    "blackbox": Binary("blackbox", "prometheus-blackbox-exporter", "prometheus-blackbox-exporter"),
}


def which(executable: str) -> str | None:
    return shutil.which(executable) or (
        f"/usr/bin/{executable}" if Path(f"/usr/bin/{executable}").exists() else None
    )


def template_fields(settings: StackSettings, out: Path) -> dict[str, str]:
    gateways = [
        f"http://127.0.0.1:{settings.gateway_port(i)}"
        for i in range(1, settings.gateway_replicas + 1)
    ]
    return {
        "rules_dir": str(out / "rules"),
        "observe_port": str(settings.monitoring_port("observe")),
        "prometheus_port": str(settings.monitoring_port("prometheus")),
        "alertmanager_port": str(settings.monitoring_port("alertmanager")),
        "blackbox_port": str(settings.monitoring_port("blackbox")),
        "redis_exporter_port": str(settings.monitoring_port("redis-exporter")),
        # JSON lists are YAML flow sequences
        "gateway_health_targets": json.dumps([f"{g}/health/ready" for g in gateways]),
        "gateway_markets_targets": json.dumps([f"{g}/api/v1/trading/markets" for g in gateways]),
    }


def render(settings: StackSettings, run_dir: Path) -> Path:
    """Write the configs of this run (ports, paths) to `<run_dir>/monitoring/`; return it."""
    out = run_dir / "monitoring"
    (out / "rules").mkdir(parents=True, exist_ok=True)
    fields = template_fields(settings, out)
    for name in ("prometheus.yml", "alertmanager.yml"):
        text = Template((TEMPLATES / name).read_text()).substitute(fields)
        (out / name).write_text(text)
    shutil.copyfile(TEMPLATES / "blackbox.yml", out / "blackbox.yml")
    for old in (out / "rules").glob("*.yml"):
        old.unlink()
    for rule_file in sorted(RULES.glob("*.yml")):
        shutil.copyfile(rule_file, out / "rules" / rule_file.name)
    return out


def monitoring_children(
    settings: StackSettings,
    run_dir: Path,
    redis_url_as: Callable[[str], str],
    secrets: StackSecrets,
) -> tuple[list[list[Child]], list[str]]:
    """Groups to start in order, and a note per monitoring binary that is missing.

    `redis_url_as(user)` is the Redis URL with that ACL user's credentials.
    """
    out = render(settings, run_dir)
    logs = run_dir / "log"
    port = settings.monitoring_port
    notes: list[str] = []
    groups: list[list[Child]] = [
        [
            Child(
                name="sd",
                argv=[*python_module("stack.observe.sd"), "--port", str(port("observe"))],
                env={
                    "ASTRA_REDIS_URL": redis_url_as("observe"),
                    "ASTRA_REGISTRY__TOKEN": secrets.registry_token,
                    "ASTRA_RUN_DIR": str(run_dir),
                },
                url=f"http://127.0.0.1:{port('observe')}",
                log_path=logs / "sd.stderr.log",
            )
        ]
    ]
    exporter = urlsplit(redis_url_as("exporter"))
    # Credentials through the environment, never argv (which `ps` shows to everyone).
    env: dict[str, dict[str, str]] = {
        "redis-exporter": {
            "REDIS_USER": unquote(exporter.username or ""),
            "REDIS_PASSWORD": unquote(exporter.password or ""),
        }
    }
    argv: dict[str, list[str]] = {
        "redis-exporter": [
            f"-redis.addr={exporter.scheme}://{exporter.hostname}:{exporter.port}",
            f"-web.listen-address=127.0.0.1:{port('redis-exporter')}",
            "-check-streams=astra.*",  # length, groups, lag and pending of every bus stream
        ],
        "blackbox": [
            f"--config.file={out / 'blackbox.yml'}",
            f"--web.listen-address=127.0.0.1:{port('blackbox')}",
        ],
        "alertmanager": [
            f"--config.file={out / 'alertmanager.yml'}",
            f"--storage.path={out / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port('alertmanager')}",
            "--cluster.listen-address=",  # one replica: no gossip port
        ],
        "prometheus": [
            f"--config.file={out / 'prometheus.yml'}",
            f"--storage.tsdb.path={out / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port('prometheus')}",
            "--enable-feature=exemplar-storage",
            "--storage.tsdb.retention.time=7d",
        ],
    }
    ready = {
        "redis-exporter": "/health",
        "blackbox": "/-/healthy",
        "alertmanager": "/-/ready",
        "prometheus": "/-/ready",
    }
    group: list[Child] = []
    for name in ("redis-exporter", "blackbox", "alertmanager", "prometheus"):
        binary = BINARIES[name]
        path = which(binary.executable)
        if path is None:
            notes.append(
                f"{name} not started: `{binary.executable}` is not installed "
                f"(apt-get install {binary.package})"
            )
            continue
        if name == "prometheus":  # scrapes and alerts: start it once the others answer
            groups.append(group)
            group = []
        group.append(
            Child(
                name=name,
                argv=[path, *argv[name]],
                env=env.get(name, {}),
                url=f"http://127.0.0.1:{port(name)}",
                log_path=logs / f"{name}.stderr.log",
                ready_path=ready[name],
            )
        )
    groups.append(group)
    return [g for g in groups if g], notes
