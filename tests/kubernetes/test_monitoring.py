"""The monitoring half of deploy/kubernetes: the generated PrometheusRules and dashboard
ConfigMaps are what stack/kubernetes.py makes from alerts/ and dashboards/ today, they
carry every alert and every dashboard, and the autoscalers ask prometheus-adapter for
a metric its rule serves, from series the ScrapeConfig labels as the rule expects."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from stack import kubernetes
from stack.observe.monitoring import DRILL_RULES, RULES, SLO_RULES
from tests.kubernetes.manifests import DEPLOY, ROOT, Obj, load_yaml, named, of_kind

ADAPTER = DEPLOY / "adapter" / "prometheus-adapter-rules.yaml"


def _rules_in(paths: list[Path], key: str) -> set[str]:
    found = set()
    for path in paths:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found |= {rule[key] for rule in group["rules"] if key in rule}
    return found


def _deployed(objects: list[Obj], key: str) -> set[str]:
    return {
        rule[key]
        for obj in of_kind(objects, "PrometheusRule")
        for group in obj["spec"]["groups"]
        for rule in group["rules"]
        if key in rule
    }


def test_the_committed_files_are_what_the_generator_makes() -> None:
    assert sorted(p.name for p in kubernetes.OUT.iterdir()) == sorted(kubernetes.generated())
    assert kubernetes.generate(check=True) == 0, "run `make kubernetes` and commit the result"


def test_the_freshness_check_sees_drift_and_missing_files(tmp_path: Path) -> None:
    assert kubernetes.generate(tmp_path, check=True) == 1  # nothing written yet
    assert kubernetes.generate(tmp_path) == 0
    assert kubernetes.generate(tmp_path, check=True) == 0
    path = tmp_path / kubernetes.RULES_FILE
    path.write_text(path.read_text().replace("BusConsumerLagHigh", "BusLagHigh"))
    assert kubernetes.generate(tmp_path, check=True) == 1


def test_generation_is_deterministic() -> None:
    assert kubernetes.generated() == kubernetes.generated()


def test_every_alert_and_record_is_deployed_and_no_drill_rule(dev: list[Obj]) -> None:
    sources = [*sorted(RULES.glob("*.yml")), *sorted(SLO_RULES.glob("*.yml"))]
    assert len(sources) >= 3, "no rule files found: the check would see nothing"
    alerts = _rules_in(sources, "alert")
    assert {"BusConsumerLagHigh", "ScrapeTargetDown"} <= alerts
    assert _deployed(dev, "alert") == alerts
    assert _deployed(dev, "record") == _rules_in(sources, "record")
    # The drill profile's copies (windows / 60) never reach a cluster.
    drill = [o for o in of_kind(dev, "PrometheusRule")
             if "rules-drill" in o["metadata"]["annotations"]["astratrade/source"]]  # fmt: skip
    assert not drill
    assert DRILL_RULES.exists()
    for source in sources:
        rule = named(dev, "PrometheusRule", kubernetes.object_name(source, "astra"))
        assert rule["spec"]["groups"] == load_yaml(source)["groups"], source.name


def test_every_dashboard_is_a_config_map_grafana_loads(dev: list[Obj]) -> None:
    dashboards = sorted((ROOT / "dashboards").glob("*.json"))
    assert dashboards
    maps = [m for m in of_kind(dev, "ConfigMap") if "grafana_dashboard" in m["metadata"]["labels"]]
    assert len(maps) == len(dashboards)
    for path in dashboards:
        config = named(dev, "ConfigMap", kubernetes.object_name(path, "astra-dashboard"))
        assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(config["data"][path.name]) == json.loads(path.read_text())
        assert config["data"][path.name] == path.read_text()  # byte for byte


def test_the_rule_generator_refuses_a_file_that_is_not_rules(tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text("rules: []\n")
    with pytest.raises(ValueError, match="no `groups:` list"):
        kubernetes.prometheus_rule(path)


def _adapter_rules() -> list[Obj]:
    rules: list[Obj] = load_yaml(ADAPTER)["rules"]["external"]
    return rules


def test_the_adapter_serves_the_metric_each_autoscaler_asks_for(objects: list[Obj]) -> None:
    served = {}
    for rule in _adapter_rules():
        assert {"seriesQuery", "metricsQuery", "name", "resources"} <= set(rule)
        assert "<<.Series>>" in rule["metricsQuery"]
        assert "<<.LabelMatchers>>" in rule["metricsQuery"]
        served[rule["name"]["as"]] = rule
    asked = 0
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] != "External":
                continue
            asked += 1
            name = metric["external"]["metric"]["name"]
            assert name in served, f"{hpa['metadata']['name']}: no adapter rule serves {name}"
            rule = served[name]
            assert re.search(rule["name"]["matches"], "astra_bus_group_lag")
            # The HPA selects by group: the query must keep that label.
            for label in metric["external"]["metric"]["selector"]["matchLabels"]:
                assert f"by ({label})" in rule["metricsQuery"]
                assert f'{label}!=""' in rule["seriesQuery"]
    assert asked >= 2, "no External metric found: the check would see nothing"


def test_each_consumer_autoscaler_follows_its_own_group(base: list[Obj]) -> None:
    groups = {}
    for hpa in of_kind(base, "HorizontalPodAutoscaler"):
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "External":
                selector = metric["external"]["metric"]["selector"]["matchLabels"]
                groups[hpa["spec"]["scaleTargetRef"]["name"]] = selector["group"]
    assert groups == {
        "gamification": "gamification_xp_processors",
        "nft": "nft_reward_distributors",
        "social": "social_feed_generators",
    }
    for service, group in groups.items():  # the group each consumer declares
        handlers = (ROOT / "services" / service / "handlers.py").read_text()
        assert f'GROUP = "{group}"' in handlers


def test_the_scrape_config_names_its_own_namespace(objects: list[Obj]) -> None:
    """The adapter's rule maps `namespace` to the HPA's: the series must carry it, and
    Prometheus must ask this namespace's sd (each overlay rewrites both)."""
    scrape = named(objects, "ScrapeConfig", "astra")
    namespace = scrape["metadata"]["namespace"]
    assert scrape["spec"]["httpSDConfigs"][0]["url"] == f"http://sd.{namespace}.svc:9099/targets"
    relabel = scrape["spec"]["relabelings"][0]
    assert relabel == {"targetLabel": "namespace", "replacement": namespace}
    assert scrape["spec"]["jobName"] == "astra"  # the alerts select job="astra"
    service = named(objects, "Service", "sd")
    assert service["metadata"]["namespace"] == namespace
    assert service["spec"]["ports"][0]["port"] == 9099
    overrides = _adapter_rules()[0]["resources"]["overrides"]
    assert overrides == {"namespace": {"resource": "namespace"}}


def test_the_readme_shows_the_adapter_rule_as_it_is() -> None:
    readme = (DEPLOY / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    shown = [yaml.safe_load(b) for b in blocks if "externalRules" in b or "external:" in b]
    assert shown == [load_yaml(ADAPTER)], "README's adapter rule differs from the file"
