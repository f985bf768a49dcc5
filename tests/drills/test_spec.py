"""Drill files: every committed drill loads, and a bad one is refused before anything
is injected, naming the file, the field and the reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from drills.spec import DRILLS, MAX_FAULT_SECONDS, DrillError, all_drills, check_targets, load_drill
from stack.chaos import proxies_for
from stack.config import StackSettings

GOOD = {
    "id": "sample",
    "title": "A sample drill",
    "description": "Latency on trading, to test the spec.",
    "defence": {"name": "circuit breaker", "disable": {"ASTRA_BREAKER__ENABLED": "false"}},
    "target": {"proxies": ["gateway_trading-*"]},
    "fault": {"kind": "toxic", "toxic": {"type": "latency", "attributes": {"latency": 100}}},
    "duration_seconds": 10,
    "hypothesis": [
        {"name": "markets", "kind": "http", "path": "/api/v1/trading/markets",
         "tolerance": {"min": 1.0}},
    ],
}  # fmt: skip


def _write(tmp_path: Path, doc: dict[str, object], name: str = "sample") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_every_committed_drill_loads_and_targets_the_default_topology() -> None:
    drills = all_drills()
    assert {"clean", "trading-latency", "reset-peer", "redis-down-trading"} <= {
        d.id for d in drills
    }
    proxies = [p.name for p in proxies_for(StackSettings(chaos=True))]
    processes = [
        "redis",
        "users-1",
        "trading-1",
        "gamification-1",
        "nft-1",
        "social-1",
        "gateway-1",
    ]
    for drill in drills:
        check_targets(drill, proxies, processes)  # raises DrillError if a glob matches nothing
        assert drill.bounded_seconds <= 400, drill.id


def test_a_good_file_loads(tmp_path: Path) -> None:
    assert load_drill(_write(tmp_path, GOOD)).id == "sample"


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
        ({"fault": {"kind": "toxic", "toxic": {"type": "lag"}}},
         "fault.toxic.toxic", "unknown toxic 'lag'"),
        ({"fault": {"kind": "toxic", "toxic": {"type": "latency", "attributes": {"delay": 5}}}},
         "fault.toxic.toxic", "no attribute ['delay']"),
        ({"hypothesis": []}, "hypothesis", "at least 1 item"),
        ({"hypothesis": [{"name": "x", "kind": "http", "path": "/a"}]},
         "hypothesis.0.tolerance", "Field required"),
        ({"hypothesis": [{"name": "x", "kind": "promql", "query": "up", "tolerance": {}}]},
         "hypothesis.0.tolerance", "needs min, max or both"),
        ({"duration_seconds": MAX_FAULT_SECONDS + 1}, "duration_seconds", "less than or equal"),
        ({"fault": {"kind": "toxic", "toxic": {"type": "reset_peer"},
                    "reconnect_every_seconds": 0}},
         "fault.toxic.reconnect_every_seconds", "greater than 0"),
        ({"fault": {"kind": "toxic", "toxic": {"type": "reset_peer"}, "reconnect": True,
                    "reconnect_every_seconds": 1}}, "fault.toxic", "not both"),
        ({"target": None}, "(top level)", "fault and target go together"),
    ],
)  # fmt: skip
def test_a_bad_file_is_refused_with_file_field_and_reason(
    tmp_path: Path, change: dict[str, object], field: str, reason: str
) -> None:
    path = _write(tmp_path, {**GOOD, **change})
    with pytest.raises(DrillError) as refused:
        load_drill(path)
    message = str(refused.value)
    assert str(path) in message
    assert field in message
    assert reason in message


def test_a_proxy_the_stack_does_not_have_is_refused_before_injecting(tmp_path: Path) -> None:
    doc = {**GOOD, "target": {"proxies": ["gateway_ledger-*"]}}
    drill = load_drill(_write(tmp_path, doc))
    with pytest.raises(DrillError, match=r"target.proxies: 'gateway_ledger-\*' matches no proxy"):
        check_targets(drill, ["gateway_trading-1"], ["trading-1"])


def test_a_file_named_unlike_its_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DrillError, match="is not the file's name"):
        load_drill(_write(tmp_path, GOOD, name="other"))


def test_the_drills_folder_is_where_the_issue_says() -> None:
    assert Path(__file__).resolve().parents[2] / "chaos" / "drills" == DRILLS


def test_runbooks_name_real_drills_and_every_expected_alert_names_its_drill() -> None:
    runbooks = Path(__file__).resolve().parents[2] / "docs" / "runbooks"
    ids = {d.id for d in all_drills()}
    for page in runbooks.glob("*.md"):
        for named in re.findall(r"astra drill run ([a-z0-9-]+)", page.read_text()):
            assert named in ids, f"{page.name} names a drill that does not exist: {named}"
    for drill in all_drills():
        for alert in drill.alerts.expected:
            text = (runbooks / f"{alert.name}.md").read_text()
            assert f"astra drill run {drill.id}" in text, (alert.name, drill.id)


def test_a_drill_named_twice_in_one_run_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    # One run keeps one stack directory and one set of request ids per drill: a second
    # pass would count the first's orders again (found: 50 "duplicated" orders).
    from drills.cli import main

    assert main(["run", "clean", "clean"]) == 2
    assert "named twice in one run: clean" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("fault", "target", "message"),
    [
        ({"kind": "poison", "stream": "astra.trading.nope.v1"}, {"processes": ["social-1"]},
         "is no event stream"),
        ({"kind": "poison", "stream": "astra.trading.trade_executed.v1"},
         {"proxies": ["gateway_trading-*"]}, "targets the consumer processes"),
        ({"kind": "trim", "stream": "astra.trading.trade_executed.v1",
          "mid_batch": {"proxy": "gamification-1_redis", "group": "g"}},
         {"proxies": ["gateway_trading-*"]}, "targets the consumer processes"),
    ],
)  # fmt: skip
def test_bus_faults_are_refused_without_a_real_stream_or_a_consumer_target(
    tmp_path: Path, fault: dict[str, object], target: dict[str, object], message: str
) -> None:
    with pytest.raises(DrillError, match=message):
        load_drill(_write(tmp_path, {**GOOD, "fault": fault, "target": target}))
