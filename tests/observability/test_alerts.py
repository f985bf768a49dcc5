"""Alert rules tied to SLOs: promtool checks and unit-tests them (each alert fires in one
case and stays quiet in another), amtool checks the routing, and a live Alertmanager
delivers a page to the stack's webhook while inhibiting the ticket of the same SLO."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from stack.config import StackSettings
from stack.observe.monitoring import render, which
from tests.observability.conftest import ObservedStack
from tests.support.poll import poll_until_sync

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "alerts"
# Hand-written symptom alerts, and the SLO rules `make alerts` derives from slos.yaml
# (normal and drill profile).
RULE_FILES = sorted(
    [
        *ALERTS.glob("*.yml"),
        *(ALERTS / "rules").glob("*.yml"),
        *(ALERTS / "rules-drill").glob("*.yml"),
    ]
)
TEST_FILES = sorted((ALERTS / "tests").glob("*.test.yml"))
RUNBOOK_SECTIONS = (
    "## What it means for users",
    "## Where to look",
    "## Likely causes",
    "## Narrow it down",
    "## Mitigation",
    "## Drill",
)


def tool(executable: str, package: str) -> str:
    path = which(executable)
    if path is None:
        pytest.skip(f"{executable} is not installed (apt-get install {package})")
    return path


def run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{argv}:\n{done.stdout}{done.stderr}"
    return done.stdout


def alerts_defined() -> dict[str, str]:
    """alertname -> its rule text (up to the next rule)."""
    found: dict[str, str] = {}
    # The drill copies of the symptom alerts (symptoms-*.yml) are the same rules, dumped
    # by the generator; the hand-written sources are the ones read here.
    for path in (p for p in RULE_FILES if not p.name.startswith("symptoms-")):
        parts = re.split(r"\n(?=\s+- (?:alert|record): )", path.read_text())
        for part in parts:
            match = re.match(r"\s+- alert: (\w+)", part)
            if match:
                found[match.group(1)] = part
    return found


def test_rules_pass_promtool_check() -> None:
    promtool = tool("promtool", "prometheus")
    assert RULE_FILES
    run([promtool, "check", "rules", *map(str, RULE_FILES)])


def test_rule_unit_tests_pass() -> None:
    """Every promtool test file, hand-written and generated; two promtool processes at
    once (the generated SLO tests are most of the ~10 s)."""
    promtool = tool("promtool", "prometheus")
    assert TEST_FILES
    halves = [TEST_FILES[0::2], TEST_FILES[1::2]]
    running = [
        subprocess.Popen(
            [promtool, "test", "rules", *map(str, half)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for half in halves
    ]
    for proc in running:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out


def test_generated_slo_rules_and_tests_are_up_to_date() -> None:
    from stack.slo.rules import generated

    files = generated()
    assert any(p.parent.name == "rules-drill" for p in files)
    for path, text in files.items():
        assert path.exists(), f"{path} missing: run `make alerts`"
        assert path.read_text() == text, f"{path} differs from alerts/slos.yaml: `make alerts`"


def test_every_alert_has_a_runbook_and_a_dashboard() -> None:
    PANELS = {
        str(p.get("title"))
        for d in (ROOT / "dashboards").glob("*.json")
        for p in orjson.loads(d.read_bytes()).get("panels", [])
    }
    for name, rule in alerts_defined().items():
        runbook = re.search(r"runbook_url: (\S+)", rule)
        assert runbook, f"{name}: no runbook_url annotation"
        assert runbook.group(1) == f"docs/runbooks/{name}.md", runbook.group(1)
        assert re.search(r"dashboard_url: /d/[a-z-]+/", rule), f"{name}: no dashboard_url"
        path = ROOT / runbook.group(1)
        assert path.is_file(), f"{name}: {path} does not exist"
        text = path.read_text()
        assert text.startswith(f"# {name}\n"), f"{path}: starts with '# {name}'"
        for heading in RUNBOOK_SECTIONS:
            assert f"\n{heading}\n" in text, f"{path}: no {heading!r} section"
        assert "astra trace" in text, f"{path}: astra trace"
        assert "astra logs" in text, f"{path}: astra logs"
        for panel in re.findall(r"(?<!\*)\*([A-Z][^*]+)\*(?!\*)", text):
            assert panel in PANELS, f"{path}: no dashboard panel {panel!r}"


def test_no_ready_instance_alert_names_every_service() -> None:
    from contracts.services import SERVICES

    rule = alerts_defined()["ServiceNoReadyInstance"]
    assert set(re.findall(r'exported_service="(\w+)"', rule)) == set(SERVICES)


def test_every_alert_has_severity_slo_and_both_kinds_of_test() -> None:
    tests = "\n".join(p.read_text() for p in TEST_FILES)
    cases = re.findall(r"alertname: (\w+)\n\s+exp_alerts:( \[\])?", tests)
    fires = {name for name, empty in cases if not empty}
    quiet = {name for name, empty in cases if empty}
    for name, rule in alerts_defined().items():
        assert re.search(r"severity: (page|ticket)\b", rule), f"{name}: severity page|ticket"
        assert re.search(r"slo: [a-z-]+", rule), f"{name}: an slo label (inhibition matches on it)"
        assert name in fires, f"{name}: no promtool case where it fires"
        assert name in quiet, f"{name}: no promtool case where it does not fire"


def test_alertmanager_routes_by_severity(tmp_path: Path) -> None:
    amtool = tool("amtool", "prometheus-alertmanager")
    config = render(StackSettings(run_dir=tmp_path), tmp_path) / "alertmanager.yml"
    run([amtool, "check-config", str(config)])
    base = [amtool, "config", "routes", "test", f"--config.file={config}"]
    run([*base, "--verify.receivers=page", "severity=page", "slo=gateway-availability"])
    run([*base, "--verify.receivers=ticket", "severity=ticket", "slo=gateway-availability"])
    run([*base, "--verify.receivers=ticket", "alertname=Unlabelled"])


def _alert(name: str, severity: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "severity": severity, "slo": "test-slo", "service": "t"},
        "annotations": {"summary": f"{name} from the test"},
        # now, not earlier: Alertmanager flushes a group at once for an alert older than
        # group_wait, which would race the inhibitor seeing the page
        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


@pytest.mark.e2e
def test_page_reaches_the_webhook_and_inhibits_the_ticket(observed: ObservedStack) -> None:
    if not observed.has("alertmanager"):
        pytest.skip("prometheus-alertmanager is not installed")
    am = observed.stack.url("alertmanager")
    alerts_file = observed.run_dir / "alerts.jsonl"
    with httpx.Client(timeout=5) as http:
        posted = http.post(
            f"{am}/api/v2/alerts",
            json=[_alert("TestBudgetBurn", "page"), _alert("TestBudgetBurnSlow", "ticket")],
        )
        assert posted.status_code == 200, posted.text

        def page_received() -> list[dict[str, Any]] | None:
            if not alerts_file.exists():
                return None
            notes = [orjson.loads(x) for x in alerts_file.read_bytes().splitlines()]
            mine = [n for n in notes if n.get("commonLabels", {}).get("slo") == "test-slo"]
            return mine or None

        notes = poll_until_sync(page_received, "the page in alerts.jsonl", 20, 0.2)
        assert notes[0]["receiver"] == "page"
        assert notes[0]["alerts"][0]["labels"]["alertname"] == "TestBudgetBurn"

        def ticket_state() -> dict[str, Any] | None:
            listed = http.get(f"{am}/api/v2/alerts").json()
            tickets = [a for a in listed if a["labels"]["alertname"] == "TestBudgetBurnSlow"]
            return tickets[0]["status"] if tickets else None

        status = poll_until_sync(ticket_state, "the ticket to be listed", 10, 0.2)
        assert status["state"] == "suppressed", status
        assert status["inhibitedBy"], status
    received = [orjson.loads(x) for x in alerts_file.read_bytes().splitlines()]
    tickets = [
        n
        for n in received
        if n["receiver"] == "ticket" and n["commonLabels"].get("slo") == "test-slo"
    ]
    assert not tickets, received
