"""deploy/kubernetes renders, and what it renders is valid Kubernetes: every built-in
object against the API's schemas (kubernetes-validate, offline, strict: an unknown
field is an error), the kube-prometheus-stack custom resources by their structure."""

from __future__ import annotations

import copy
import re
from typing import Any

import kubernetes_validate
import pytest

from tests.kubernetes.manifests import CRD_KINDS, Obj, ident, named

# The oldest Kubernetes these manifests promise to work on (README).
KUBERNETES_VERSION = "1.30"
DURATION = re.compile(r"^(0|(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?)$")
RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
GROUP_KEYS = {"name", "interval", "rules", "limit", "labels", "partial_response_strategy",
              "query_offset"}  # fmt: skip
RELABEL_KEYS = {"action", "modulus", "regex", "replacement", "separator", "sourceLabels",
                "targetLabel"}  # fmt: skip


def schema_problems(objects: list[Obj]) -> list[str]:
    problems = []
    for obj in objects:
        if (obj.get("apiVersion"), obj.get("kind")) in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            problems.append(f"{ident(obj)}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            problems.append(f"{ident(obj)}: {e.message}")
    return problems


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def prometheus_rule_problems(obj: Obj) -> list[str]:
    """The PrometheusRule CRD's shape (monitoring.coreos.com/v1): groups of rules, each
    an alert or a record with an expression, durations and string labels."""
    where = ident(obj)
    problems = []
    if not obj.get("metadata", {}).get("name"):
        problems.append(f"{where}: no metadata.name")
    groups = (obj.get("spec") or {}).get("groups")
    if not isinstance(groups, list) or not groups:
        return [*problems, f"{where}: spec.groups is not a non-empty list"]
    names = [g.get("name") for g in groups if isinstance(g, dict)]
    if len(set(names)) != len(groups):
        problems.append(f"{where}: group names missing or repeated: {names}")
    for group in groups:
        if not isinstance(group, dict):
            problems.append(f"{where}: a group that is not a mapping")
            continue
        problems += [
            f"{where}/{group.get('name')}: unknown key {k}" for k in set(group) - GROUP_KEYS
        ]
        rules = group.get("rules")
        if not isinstance(rules, list) or not rules:
            problems.append(f"{where}/{group.get('name')}: no rules")
            continue
        for rule in rules:
            label = rule.get("alert") or rule.get("record")
            at = f"{where}/{group.get('name')}/{label}"
            if ("alert" in rule) == ("record" in rule):
                problems.append(f"{at}: needs exactly one of alert and record")
            if not isinstance(rule.get("expr"), str) or not rule["expr"].strip():
                problems.append(f"{at}: no expr")
            problems += [f"{at}: unknown key {k}" for k in set(rule) - RULE_KEYS]
            for key in ("for", "keep_firing_for"):
                if key in rule and not DURATION.match(str(rule[key])):
                    problems.append(f"{at}: {key} {rule[key]!r} is not a duration")
            for key in ("labels", "annotations"):
                if key in rule and not _string_map(rule[key]):
                    problems.append(f"{at}: {key} must map strings to strings")
            if "record" in rule and ("for" in rule or "annotations" in rule):
                problems.append(f"{at}: a recording rule with for/annotations")
    return problems


def scrape_config_problems(obj: Obj) -> list[str]:
    """The ScrapeConfig CRD's shape (monitoring.coreos.com/v1alpha1) for what we use."""
    where, spec = ident(obj), obj.get("spec") or {}
    problems = []
    known = {"jobName", "scrapeInterval", "httpSDConfigs", "relabelings", "metricsPath"}
    problems += [f"{where}: unknown or unexpected key {k}" for k in set(spec) - known]
    sd = spec.get("httpSDConfigs")
    if not isinstance(sd, list) or not sd or not all(str(c.get("url", "")).startswith("http")
                                                     for c in sd):  # fmt: skip
        problems.append(f"{where}: httpSDConfigs needs a url")
    for relabel in spec.get("relabelings", []):
        problems += [f"{where}: relabeling key {k}" for k in set(relabel) - RELABEL_KEYS]
    for key in ("scrapeInterval",):
        if key in spec and not DURATION.match(spec[key]):
            problems.append(f"{where}: {key} is not a duration")
    return problems


def crd_problems(objects: list[Obj]) -> list[str]:
    problems = []
    for obj in objects:
        if obj.get("kind") == "PrometheusRule":
            problems += prometheus_rule_problems(obj)
        elif obj.get("kind") == "ScrapeConfig":
            problems += scrape_config_problems(obj)
    return problems


def test_every_built_in_object_is_valid_against_the_api_schema(objects: list[Obj]) -> None:
    problems = schema_problems(objects)
    assert not problems, "\n".join(problems)


def test_every_custom_resource_has_its_crd_shape(objects: list[Obj]) -> None:
    kinds = {(o["apiVersion"], o["kind"]) for o in objects}
    assert kinds >= CRD_KINDS, "the monitoring objects are missing from the render"
    problems = crd_problems(objects)
    assert not problems, "\n".join(problems)


def test_the_schema_check_refuses_what_the_api_would(dev: list[Obj]) -> None:
    deployment = copy.deepcopy(named(dev, "Deployment", "gateway"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # a typo
    assert "readinesProbe" in "\n".join(schema_problems([deployment]))
    deployment = copy.deepcopy(named(dev, "Deployment", "gateway"))
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "x"
    assert schema_problems([deployment])
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert "Widget" in "\n".join(schema_problems([unknown]))


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda r: r.pop("expr"), "no expr"),
        (lambda r: r.update(record="x"), "exactly one of alert and record"),
        (lambda r: r.update({"for": "five minutes"}), "not a duration"),
        (lambda r: r["labels"].update(threshold=1), "strings to strings"),
        (lambda r: r.update(exprr="up"), "unknown key exprr"),
    ],
    ids=["no-expr", "alert-and-record", "bad-for", "int-label", "typo"],
)
def test_the_rule_check_refuses_a_broken_rule(dev: list[Obj], breakage: Any, expected: str) -> None:
    rule = copy.deepcopy(named(dev, "PrometheusRule", "astra-bus"))
    assert prometheus_rule_problems(rule) == []
    breakage(rule["spec"]["groups"][0]["rules"][0])
    assert expected in "\n".join(prometheus_rule_problems(rule))


def test_the_scrape_check_refuses_a_broken_scrape_config(dev: list[Obj]) -> None:
    scrape = copy.deepcopy(named(dev, "ScrapeConfig", "astra"))
    assert scrape_config_problems(scrape) == []
    scrape["spec"]["httpSDConfigs"][0].pop("url")
    scrape["spec"]["relabelings"][0]["target_label"] = "x"
    found = "\n".join(scrape_config_problems(scrape))
    assert "needs a url" in found
    assert "target_label" in found
