"""The monitoring processes of `astra up`: rendered configs pass the real checkers,
Prometheus scrapes every registered instance (exemplars included), the exporters answer."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.services import SERVICES
from stack.config import StackSettings
from stack.observe.monitoring import render, which
from stack.secrets import StackSecrets
from tests.observability.conftest import ObservedStack
from tests.support.poll import poll_until_sync


def require(executable: str, package: str) -> str:
    path = which(executable)
    if path is None:
        pytest.skip(f"{executable} is not installed (apt-get install {package})")
    return path


def check(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    return render(StackSettings(port_offset=1000, run_dir=tmp_path), tmp_path)


def test_rendered_prometheus_config_passes_promtool(rendered: Path) -> None:
    promtool = require("promtool", "prometheus")
    text = (rendered / "prometheus.yml").read_text()
    assert "127.0.0.1:10099/targets" in text  # http_sd from the stack's discovery process
    assert "${" not in text
    alerts = Path(__file__).parents[2] / "alerts"
    assert sorted(p.name for p in (rendered / "rules").glob("*.yml")) == sorted(
        p.name for p in [*alerts.glob("*.yml"), *(alerts / "rules").glob("*.yml")]
    )
    assert "scrape_interval: 5s" in text
    check([promtool, "check", "config", str(rendered / "prometheus.yml")])


def test_the_drill_profile_loads_the_drill_rules_at_one_second(tmp_path: Path) -> None:
    promtool = require("promtool", "prometheus")
    out = render(StackSettings(run_dir=tmp_path, drill=True), tmp_path)
    text = (out / "prometheus.yml").read_text()
    assert "scrape_interval: 1s" in text
    assert "evaluation_interval: 1s" in text
    drill = Path(__file__).parents[2] / "alerts" / "rules-drill"
    for path in drill.glob("*.yml"):
        assert (out / "rules" / path.name).read_text() == path.read_text()
    assert "[5s]" in (out / "rules" / "slo-read-availability.yml").read_text()
    check([promtool, "check", "config", str(out / "prometheus.yml")])


def test_rendered_alertmanager_config_passes_amtool(rendered: Path) -> None:
    amtool = require("amtool", "prometheus-alertmanager")
    check([amtool, "check-config", str(rendered / "alertmanager.yml")])


def test_blackbox_config_passes_its_own_check(rendered: Path) -> None:
    blackbox = require("prometheus-blackbox-exporter", "prometheus-blackbox-exporter")
    check([blackbox, f"--config.file={rendered / 'blackbox.yml'}", "--config.check"])


def _query(http: httpx.Client, prometheus: str, promql: str) -> list[dict[str, Any]]:
    body = http.get(f"{prometheus}/api/v1/query", params={"query": promql}).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_scrapes_every_instance_probes_and_streams(observed: ObservedStack) -> None:
    prometheus = observed.prometheus()
    names = {c["name"] for c in observed.stack.info["children"]}  # type: ignore[attr-defined]
    registered = {n for n in names if n.split("-")[0] in {*SERVICES, "gateway"}}
    with httpx.Client(timeout=5) as http:

        def astra_targets_up() -> set[str] | None:
            body = http.get(f"{prometheus}/api/v1/targets").json()
            up = {
                t["labels"]["instance"]
                for t in body["data"]["activeTargets"]
                if t["labels"]["job"] == "astra" and t["health"] == "up"
            }
            return up if registered <= up else None

        up = poll_until_sync(astra_targets_up, "every registered instance scraped", 20, 0.25)
        assert {"gateway-1", "trading-1"} <= up
        series = _query(http, prometheus, 'up{job="astra"}')
        assert {s["metric"]["service"] for s in series} >= {"gateway", "trading", "users"}

        if observed.has("blackbox"):
            probes = poll_until_sync(
                lambda: (
                    [p for p in _query(http, prometheus, "probe_success") if p["value"][1] == "1"]
                    if len(_query(http, prometheus, "probe_success == 1")) == 2
                    else None
                ),
                "both gateway probes to succeed",
                20,
                0.25,
            )
            assert {p["metric"]["probe"] for p in probes} == {"gateway_health", "gateway_markets"}
        if observed.has("redis-exporter"):
            streams = poll_until_sync(
                lambda: _query(http, prometheus, 'redis_stream_length{stream=~"astra\\\\..*"}'),
                "the redis exporter's stream checks",
                20,
                0.25,
            )
            assert any(s["metric"]["stream"].startswith("astra.trading.") for s in streams)

        def exemplars() -> list[dict[str, Any]] | None:
            now = time.time()
            body = http.get(
                f"{prometheus}/api/v1/query_exemplars",
                params={
                    "query": 'astra_http_server_request_duration_seconds_bucket{service="gateway"}',
                    "start": now - 600,
                    "end": now + 60,
                },
            ).json()
            found = [e for group in body.get("data") or [] for e in group["exemplars"]]
            return found or None

        found = poll_until_sync(exemplars, "exemplars from the gateway's histogram", 20, 0.5)
        assert all(len(e["labels"]["trace_id"]) == 32 for e in found)


def test_alertmanager_and_sd_are_up(observed: ObservedStack) -> None:
    if not observed.has("alertmanager"):
        pytest.skip("prometheus-alertmanager is not installed")
    with httpx.Client(timeout=5) as http:
        assert http.get(f"{observed.stack.url('alertmanager')}/-/ready").status_code == 200
        targets = http.get(f"{observed.stack.url('sd')}/targets").json()
        assert "gateway" in {t["labels"]["service"] for t in targets}


def test_missing_binaries_are_reported_not_fatal(tmp_path: Path, monkeypatch: Any) -> None:
    from stack.observe import monitoring

    monkeypatch.setattr(monitoring, "which", lambda executable: None)
    secrets = StackSecrets("r" * 32, "o" * 32, {})
    groups, notes = monitoring.monitoring_children(
        StackSettings(), tmp_path, lambda user: "redis://x:1/0", secrets
    )
    assert [c.name for g in groups for c in g] == ["sd"]
    assert len(notes) == 4
    assert any("apt-get install prometheus-alertmanager" in n for n in notes)


def test_symptom_alerts_are_quiet_on_a_healthy_stack(observed: ObservedStack) -> None:
    """The live labels are what alerts/platform.yml assumes (the gateway's registry gauge
    carries the service in `exported_service`), and on a healthy stack the alerts that
    read them select nothing."""
    import yaml

    prometheus = observed.prometheus()
    rules = yaml.safe_load((Path(__file__).parents[2] / "alerts" / "platform.yml").read_text())
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    ready = 'astra_registry_instances{job="astra",service="gateway",status="ready"} > 0'
    with httpx.Client(timeout=5) as http:

        def every_service_ready() -> set[str] | None:
            seen = {
                s["metric"].get("exported_service", "") for s in _query(http, prometheus, ready)
            }
            return seen if seen >= set(SERVICES) else None

        poll_until_sync(every_service_ready, "the gateway's view of every service", 20, 0.25)
        for name in ("ServiceNoReadyInstance", "ScrapeTargetDown"):
            assert _query(http, prometheus, exprs[name]) == [], name
