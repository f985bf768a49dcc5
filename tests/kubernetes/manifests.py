"""deploy/kubernetes rendered the way an operator renders it, and walked.

`render("overlays/dev")` runs `kubectl kustomize` (the kustomize built into kubectl);
without kubectl the caller skips, saying so. The walkers hand the checks in policy.py
what they look at: workloads, their pod templates and every container in them.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
RENDERS = ("base", "overlays/dev", "overlays/prod")
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
# Custom resources of kube-prometheus-stack: no schema in kubernetes-validate, checked
# structurally by test_render.py instead.
CRD_KINDS = {("monitoring.coreos.com/v1", "PrometheusRule"),
             ("monitoring.coreos.com/v1alpha1", "ScrapeConfig")}  # fmt: skip

Obj = dict[str, Any]


class KubectlMissing(RuntimeError):
    """kubectl is not on PATH: nothing can be rendered here."""


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        raise KubectlMissing(
            "kubectl is not installed: deploy/kubernetes cannot be rendered "
            "(`kubectl kustomize`), so its checks did not run"
        )
    return found


def render(name: str, root: Path = DEPLOY) -> list[Obj]:
    """The objects `kubectl kustomize <root>/<name>` prints, in its order."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(root / name)], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {name} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o.get("kind") == kind]


def named(objects: list[Obj], kind: str, name: str) -> Obj:
    for o in of_kind(objects, kind):
        if o["metadata"]["name"] == name:
            return o
    raise KeyError(f"{kind}/{name} not rendered")


def ident(obj: Obj) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def workloads(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o.get("kind") in WORKLOAD_KINDS]


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def template_labels(workload: Obj) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"].get("labels", {})
    return labels


@dataclass(frozen=True)
class Container:
    workload: Obj
    spec: Obj
    init: bool  # an init container (runs to completion; a sidecar has restartPolicy Always)

    @property
    def where(self) -> str:
        kind = "initContainer" if self.init else "container"
        return f"{ident(self.workload)} {kind} {self.spec.get('name')}"

    @property
    def one_shot(self) -> bool:
        return self.init and self.spec.get("restartPolicy") != "Always"


def containers(objects: list[Obj]) -> Iterator[Container]:
    for workload in workloads(objects):
        spec = pod_spec(workload)
        for c in spec.get("initContainers", []) or []:
            yield Container(workload, c, init=True)
        for c in spec.get("containers", []):
            yield Container(workload, c, init=False)


def selects(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a label set."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
