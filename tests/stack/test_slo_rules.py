"""stack.slo.rules: what it derives from alerts/slos.yaml, and what it refuses."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from stack.slo.rules import (
    DRILL,
    MIN_EVENTS,
    NORMAL,
    SPEC,
    TIERS,
    duration,
    generate,
    generated,
    min_events,
    rule_group,
    threshold,
)
from stack.slo.spec import SloSpecError, load_spec


def spec_with(tmp_path: Path, old: str, new: str) -> Path:
    text = SPEC.read_text()
    assert old in text, old
    path = tmp_path / "alerts" / "slos.yaml"
    path.parent.mkdir()
    path.write_text(text.replace(old, new, 1))
    return path


def test_a_threshold_off_the_buckets_is_refused(tmp_path: Path) -> None:
    path = spec_with(tmp_path, 'threshold_seconds: "0.25"', 'threshold_seconds: "0.35"')
    with pytest.raises(
        SloSpecError, match=r"slo 'read-latency': threshold_seconds 0.35 is not a bucket"
    ) as refused:
        generated(path)
    assert str(refused.value).startswith(f"{path}: ")


def test_a_freshness_threshold_off_the_buckets_is_refused(tmp_path: Path) -> None:
    path = spec_with(tmp_path, 'threshold_seconds: "2"', 'threshold_seconds: "3"')
    with pytest.raises(SloSpecError, match=r"gamification-xp-processors-freshness': threshold"):
        generated(path)


def test_a_bucket_selector_other_than_the_threshold_is_refused(tmp_path: Path) -> None:
    path = spec_with(tmp_path, 'slo_class="read",le="0.25"', 'slo_class="read",le="0.3"')
    with pytest.raises(SloSpecError, match=r"'read-latency': error_query selects le=\"0.3\""):
        generated(path)


def test_a_bucket_selector_spelled_unlike_the_exposition_is_refused(tmp_path: Path) -> None:
    # prometheus_client writes le="1.0": le="1" would select nothing
    path = spec_with(tmp_path, 'slo_class="auth",le="1.0"', 'slo_class="auth",le="1"')
    with pytest.raises(SloSpecError, match=r"'auth-latency'.*exposes it as le=\"1.0\""):
        generated(path)


def test_generate_reports_a_refusal_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = spec_with(tmp_path, 'threshold_seconds: "0.5"', 'threshold_seconds: "0.45"')
    assert generate(path) == 1
    assert "refused:" in capsys.readouterr().out
    assert not (path.parent / "rules").exists()


def test_check_finds_drift_and_stale_files(tmp_path: Path) -> None:
    alerts = tmp_path / "alerts"
    alerts.mkdir()
    shutil.copyfile(SPEC, alerts / "slos.yaml")
    assert generate(alerts / "slos.yaml", check_only=True) == 1  # nothing written yet
    assert generate(alerts / "slos.yaml") == 0
    assert generate(alerts / "slos.yaml", check_only=True) == 0
    (alerts / "rules" / "slo-gone.yml").write_text("groups: []\n")
    assert generate(alerts / "slos.yaml", check_only=True) == 1
    assert generate(alerts / "slos.yaml") == 0
    assert not (alerts / "rules" / "slo-gone.yml").exists()


def test_rules_follow_sloth_naming_and_guard_the_denominator() -> None:
    spec = load_spec(SPEC)
    slo = next(s for s in spec.slos if s.name == "read-availability")
    rules = rule_group(spec, slo, NORMAL)["rules"]
    records = {r["record"] for r in rules if "record" in r}
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        assert f"slo:sli_error:ratio_rate{window}" in records
        assert f"slo:sli_total:rate{window}" in records
    assert {
        "slo:objective:ratio",
        "slo:error_budget:ratio",
        "slo:current_burn_rate:ratio",
        "slo:period_error_budget_remaining:ratio",
    } <= records
    ratio = next(r for r in rules if r.get("record") == "slo:sli_error:ratio_rate1h")
    assert "clamp_min(" in ratio["expr"]
    assert ratio["labels"]["sloth_window"] == "1h"
    assert ratio["labels"]["sloth_id"] == "astratrade-read-availability"
    alerts = [r for r in rules if "alert" in r]
    tiers = {(a["labels"]["burnrate_tier"], a["labels"]["severity"]) for a in alerts}
    assert tiers == {("fast", "page"), ("medium", "page"), ("slow", "ticket"), ("long", "ticket")}
    # Minimum traffic in the long window: enough that one bad event alone stays at or
    # under the tier's threshold (1 / (factor x 0.1 % budget)), never under 20.
    minimum = {"fast": 70, "medium": 167, "slow": 334, "long": 1000}
    for alert in alerts:
        assert f">= {minimum[alert['labels']['burnrate_tier']]})" in alert["expr"]
        assert alert["annotations"]["runbook_url"] == "docs/runbooks/ReadAvailabilityBudgetBurn.md"


def test_the_drill_profile_divides_windows_and_keeps_thresholds() -> None:
    spec = load_spec(SPEC)
    slo = spec.slos[0]
    normal = rule_group(spec, slo, NORMAL)["rules"]
    drill = rule_group(spec, slo, DRILL)["rules"]
    assert duration(3600 // 60) == "1m"
    assert duration(259200 // 60) == "1h12m"
    by_record = {r["record"]: r for r in drill if "record" in r}
    assert by_record["slo:sli_error:ratio_rate1h"]["labels"]["sloth_window"] == "1m"
    assert "[5s]" in by_record["slo:sli_error:ratio_rate5m"]["expr"]
    assert "[1h12m]" in by_record["slo:sli_error:ratio_rate3d"]["expr"]
    for n, d in zip(
        [r for r in normal if "alert" in r], [r for r in drill if "alert" in r], strict=True
    ):
        assert n["labels"] == d["labels"]
        threshold = n["expr"].split(" > ")[1].split(")")[0]
        assert f" > {threshold})" in d["expr"]
    assert {a["for"] for a in drill if "alert" in a} == {"2s", "15s"}


def test_generated_files_are_valid_yaml() -> None:
    for path, text in generated().items():
        assert yaml.safe_load(text), path


def test_an_availability_sli_selecting_a_bucket_is_refused(tmp_path: Path) -> None:
    path = spec_with(
        tmp_path,
        'slo_class="read",status=~"5.."}',
        'slo_class="read",status=~"5..",le="0.25"}',
    )
    with pytest.raises(SloSpecError, match=r"'read-availability': an availability SLI selects"):
        generated(path)


def test_one_bad_event_among_the_minimum_cannot_cross_any_threshold() -> None:
    for slo in load_spec(SPEC).slos:
        for tier in TIERS:
            n = min_events(slo, tier)
            assert n >= MIN_EVENTS
            assert not 1 / n > threshold(slo, tier), (slo.name, tier.name, n)
            assert 1 / (n - 1) > threshold(slo, tier) or n == MIN_EVENTS  # the least such n


def test_the_drill_copies_of_the_symptom_alerts_divide_time_and_only_time() -> None:
    from stack.slo.symptoms import drill_copies

    copies = drill_copies(SPEC.parent, DRILL.factor)
    bus = yaml.safe_load(copies[SPEC.parent / "rules-drill" / "symptoms-bus.yml"])
    rules = {r["alert"]: r for g in bus["groups"] for r in g["rules"]}
    assert rules["OutboxBacklogStale"]["for"] == "5s"  # 5m / 60
    assert rules["OutboxBacklogStale"]["expr"].endswith("> 1")  # 60 s, a duration: / 60
    assert rules["BusConsumerLagHigh"]["expr"].endswith("> 1000")  # a count: unchanged
    assert "[15s]" in rules["BusDeadLettersGrowing"]["expr"]  # [15m] / 60
    platform = yaml.safe_load(copies[SPEC.parent / "rules-drill" / "symptoms-platform.yml"])
    breaker = next(
        r for g in platform["groups"] for r in g["rules"] if r["alert"] == "GatewayBreakerOpen"
    )
    assert breaker["for"] == "2s"
