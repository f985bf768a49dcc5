"""The rules every rendered manifest is held to, as functions: objects in, problems out.

Each check returns a list of readable problems (empty: it holds), so a test can show
all of them at once, and test_policy.py can prove each check on a manifest broken on
purpose: a check that finds nothing there would pass anything.
"""

from __future__ import annotations

import re
from typing import Any

from stack.containers.roles import ROLES
from tests.kubernetes.manifests import (
    Obj,
    containers,
    ident,
    of_kind,
    pod_spec,
    selects,
    template_labels,
    workloads,
)

NAME = "app.kubernetes.io/name"
IMAGE = "astratrade"  # the one image name kustomize `images:` sets
RUN_DIR = "/var/lib/astra"  # ASTRA_RUN_DIR in the image and base/astra.env
# Variables that hold a credential, whatever the role: never a literal value.
SECRET_VARIABLE = re.compile(r"(TOKEN|PASSWORD|SECRET|_KEY$|REDIS_URL|DATABASE_URL)")
CREDENTIALS_IN_URL = re.compile(r"://[^/@\s]+:[^/@\s]+@")
PROMETHEUS_NAMESPACE = {"kubernetes.io/metadata.name": "monitoring"}
PROMETHEUS_PODS = {NAME: "prometheus"}
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9,
          "m": 1e-3}  # fmt: skip


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity ("100m", "1", "384Mi") as a number."""
    text = str(value)
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * _UNITS[suffix]
    return float(text)


def role_of(workload: Obj) -> str | None:
    """The stack/containers/roles.py role a workload runs, if it is one of ours."""
    name = template_labels(workload).get(NAME)
    return name if name in ROLES else None


def _ports(container: Obj) -> dict[str | int, int]:
    """Name and number of each port a container declares -> the number."""
    out: dict[str | int, int] = {}
    for port in container.get("ports", []) or []:
        out[port["containerPort"]] = port["containerPort"]
        if "name" in port:
            out[port["name"]] = port["containerPort"]
    return out


def _probe_port(probe: Obj) -> Any:
    for handler in ("httpGet", "tcpSocket", "grpc"):
        if handler in probe:
            return probe[handler].get("port")
    return None


def check_probes(objects: list[Obj]) -> list[str]:
    """Long-running containers: readiness and liveness probes, HTTP ones on the
    health paths, every probe on a port the container declares, that port the
    role's own (roles.py). One-shot init containers may not have probes."""
    problems = []
    for c in containers(objects):
        probes = {k: c.spec.get(k) for k in ("readinessProbe", "livenessProbe", "startupProbe")}
        if c.one_shot:
            problems += [f"{c.where}: {k} on a one-shot init container" for k, v in probes.items()
                         if v]  # fmt: skip
            continue
        for kind in ("readinessProbe", "livenessProbe"):
            if not probes[kind]:
                problems.append(f"{c.where}: no {kind}")
        ports = _ports(c.spec)
        role = role_of(c.workload)
        for kind, probe in probes.items():
            if not probe:
                continue
            if "exec" not in probe:
                port = _probe_port(probe)
                if port not in ports:
                    problems.append(f"{c.where}: {kind} on port {port!r}, not one it exposes")
                elif role is not None and ports[port] != ROLES[role].port:
                    problems.append(
                        f"{c.where}: {kind} on {ports[port]}, {role} listens on {ROLES[role].port}"
                    )
            want = {"readinessProbe": "/health/ready", "livenessProbe": "/health/live"}.get(kind)
            if want and "httpGet" in probe and probe["httpGet"].get("path") != want:
                problems.append(
                    f"{c.where}: {kind} asks {probe['httpGet'].get('path')}, not {want}"
                )
    return problems


def check_resources(objects: list[Obj]) -> list[str]:
    """Every container, init ones too: cpu and memory requests and limits, requests
    not above limits."""
    problems = []
    for c in containers(objects):
        resources = c.spec.get("resources") or {}
        for part in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(part) or {}):
                    problems.append(f"{c.where}: no {resource} {part[:-1]}")
        for resource in ("cpu", "memory"):
            request = (resources.get("requests") or {}).get(resource)
            limit = (resources.get("limits") or {}).get(resource)
            if request is not None and limit is not None and quantity(request) > quantity(limit):
                problems.append(f"{c.where}: {resource} request {request} above limit {limit}")
    return problems


def check_guaranteed(objects: list[Obj]) -> list[str]:
    """Requests equal to limits (Guaranteed QoS), the production overlay's rule."""
    problems = []
    for c in containers(objects):
        resources = c.spec.get("resources") or {}
        for resource in ("cpu", "memory"):
            request = (resources.get("requests") or {}).get(resource)
            limit = (resources.get("limits") or {}).get(resource)
            if request is None or limit is None or quantity(request) != quantity(limit):
                problems.append(f"{c.where}: {resource} request {request} != limit {limit}")
    return problems


def check_security(objects: list[Obj]) -> list[str]:
    """Pod and container security contexts: non-root as the role's own uid, read-only
    root, no privilege escalation, no capabilities, RuntimeDefault seccomp; no API token."""
    problems = []
    for workload in workloads(objects):
        spec, where = pod_spec(workload), ident(workload)
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: automountServiceAccountToken is not false")
        pod = spec.get("securityContext") or {}
        role = role_of(workload)
        if pod.get("runAsNonRoot") is not True:
            problems.append(f"{where}: pod runAsNonRoot is not true")
        if (pod.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccompProfile is not RuntimeDefault")
        if role is not None and pod.get("runAsUser") != ROLES[role].uid:
            problems.append(f"{where}: pod runAsUser {pod.get('runAsUser')}, {role} is "
                            f"{ROLES[role].uid}")  # fmt: skip
    for c in containers(objects):
        pod = pod_spec(c.workload).get("securityContext") or {}
        own = c.spec.get("securityContext") or {}

        def effective(key: str, own: Obj = own, pod: Obj = pod) -> Any:
            return own.get(key, pod.get(key))

        uid = effective("runAsUser")
        role = role_of(c.workload)
        if effective("runAsNonRoot") is not True:
            problems.append(f"{c.where}: runAsNonRoot is not true")
        if not uid:
            problems.append(f"{c.where}: runAsUser {uid!r} (root or unset)")
        elif role is not None and uid != ROLES[role].uid:
            problems.append(f"{c.where}: runAsUser {uid}, {role} is {ROLES[role].uid}")
        if own.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{c.where}: readOnlyRootFilesystem is not true")
        if own.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{c.where}: allowPrivilegeEscalation is not false")
        if own.get("privileged"):
            problems.append(f"{c.where}: privileged")
        caps = own.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []) or caps.get("add"):
            problems.append(f"{c.where}: capabilities do not drop ALL (or add some)")
        if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{c.where}: seccompProfile is not RuntimeDefault")
    return problems


def check_writable_paths(objects: list[Obj]) -> list[str]:
    """Every mount names a volume of the pod; the stack's long-running processes have
    their run directory and /tmp on volumes (their root file system is read-only)."""
    problems = []
    for c in containers(objects):
        volumes = {v["name"] for v in pod_spec(c.workload).get("volumes", []) or []}
        claims = c.workload["spec"].get("volumeClaimTemplates", []) or []
        volumes |= {claim["metadata"]["name"] for claim in claims}
        mounts = {m["mountPath"]: m["name"] for m in c.spec.get("volumeMounts", []) or []}
        for path, name in mounts.items():
            if name not in volumes:
                problems.append(f"{c.where}: mounts {name} at {path}, no such volume")
        if role_of(c.workload) is not None and not c.init:
            for path in (RUN_DIR, "/tmp"):
                if path not in mounts:
                    problems.append(f"{c.where}: {path} is not on a volume (read-only root)")
    return problems


def check_disruption_budgets(objects: list[Obj]) -> list[str]:
    """One PodDisruptionBudget per workload, selecting its pods and no other's, and
    never one that forbids every eviction (a drain would hang)."""
    problems = []
    budgets = of_kind(objects, "PodDisruptionBudget")
    every = workloads(objects)
    for workload in every:
        labels = template_labels(workload)
        mine = [b for b in budgets if selects(b["spec"].get("selector"), labels)]
        if len(mine) != 1:
            problems.append(f"{ident(workload)}: {len(mine)} disruption budgets select its pods")
            continue
        budget = mine[0]["spec"]
        others = [ident(w) for w in every if w is not workload
                  and selects(budget.get("selector"), template_labels(w))]  # fmt: skip
        if others:
            problems.append(f"{ident(mine[0])} also selects the pods of {', '.join(others)}")
        replicas = workload["spec"].get("replicas", 1)
        if "minAvailable" in budget and quantity(budget["minAvailable"]) >= replicas:
            problems.append(f"{ident(mine[0])}: minAvailable {budget['minAvailable']} of "
                            f"{replicas} replica(s) blocks every drain")  # fmt: skip
        if budget.get("maxUnavailable") in (0, "0", "0%"):
            problems.append(f"{ident(mine[0])}: maxUnavailable 0 blocks every drain")
    for budget in budgets:
        if not any(selects(budget["spec"].get("selector"), template_labels(w)) for w in every):
            problems.append(f"{ident(budget)} selects no workload")
    return problems


def _is_prometheus(peer: Obj) -> bool:
    return (
        set(peer) == {"namespaceSelector", "podSelector"}
        and peer["namespaceSelector"].get("matchLabels") == PROMETHEUS_NAMESPACE
        and peer["podSelector"].get("matchLabels") == PROMETHEUS_PODS
    )


def check_network_policies(objects: list[Obj]) -> list[str]:
    """Default-deny ingress; every pod let in by a policy of its own; only the gateway
    open to any source; elsewhere peers are this namespace's pods or Prometheus."""
    problems = []
    policies = of_kind(objects, "NetworkPolicy")
    deny = [
        p
        for p in policies
        if p["spec"].get("podSelector") == {}
        and "Ingress" in p["spec"].get("policyTypes", [])
        and not p["spec"].get("ingress")
    ]
    if not deny:
        problems.append("no default-deny ingress policy (podSelector {}, Ingress, no rules)")
    for workload in workloads(objects):
        labels = template_labels(workload)
        allowing = [p for p in policies if p["spec"].get("ingress")
                    and selects(p["spec"].get("podSelector"), labels)]  # fmt: skip
        if not allowing:
            problems.append(f"{ident(workload)}: no policy lets anything in")
        exposed = {k for c in pod_spec(workload)["containers"] for k in _ports(c)}
        for policy in allowing:
            for rule in policy["spec"]["ingress"]:
                for port in rule.get("ports", []) or []:
                    if port.get("port") not in exposed:
                        problems.append(f"{ident(policy)}: port {port.get('port')!r} is not one "
                                        f"{ident(workload)} exposes")  # fmt: skip
    for policy in policies:
        pods = [w for w in workloads(objects)
                if selects(policy["spec"].get("podSelector"), template_labels(w))]  # fmt: skip
        for rule in policy["spec"].get("ingress", []) or []:
            peers = rule.get("from")
            if not peers:  # any source
                outsiders = [ident(w) for w in pods if role_of(w) != "gateway"]
                if outsiders:
                    problems.append(f"{ident(policy)}: open to any source: {', '.join(outsiders)}")
                continue
            for peer in peers:
                if not (set(peer) == {"podSelector"} or _is_prometheus(peer)):
                    problems.append(f"{ident(policy)}: peer {peer} is neither this namespace's "
                                    "pods nor Prometheus")  # fmt: skip
    return problems


def check_secret_references(objects: list[Obj]) -> list[str]:
    """No Secret is rendered (they are made from the bootstrap's output, README); a
    credential reaches a container only from a Secret, by reference."""
    problems = [f"{ident(o)}: a Secret in the manifests" for o in of_kind(objects, "Secret")]
    for c in containers(objects):
        for env in c.spec.get("env", []) or []:
            source = env.get("valueFrom") or {}
            if SECRET_VARIABLE.search(env["name"]) and "secretKeyRef" not in source:
                problems.append(f"{c.where}: {env['name']} is not from a Secret")
            ref = source.get("secretKeyRef")
            if ref is not None and not (ref.get("name") and ref.get("key")):
                problems.append(f"{c.where}: {env['name']}: secretKeyRef without name and key")
            if CREDENTIALS_IN_URL.search(str(env.get("value", ""))):
                problems.append(f"{c.where}: {env['name']} holds a URL with credentials")
        for source in c.spec.get("envFrom", []) or []:
            if "secretRef" in source and not source["secretRef"].get("name"):
                problems.append(f"{c.where}: envFrom secretRef without a name")
    for config in of_kind(objects, "ConfigMap"):
        for key, value in (config.get("data") or {}).items():
            if SECRET_VARIABLE.search(key) or CREDENTIALS_IN_URL.search(value):
                problems.append(f"{ident(config)}: {key} looks like a secret")
    return problems


def split_image(image: str) -> tuple[str, str, str]:
    """`registry:5000/astratrade:0.1.0@sha256:...` -> (name, tag, digest)."""
    rest, _, digest = image.partition("@")
    if ":" in rest.rsplit("/", 1)[-1]:
        name, tag = rest.rsplit(":", 1)
        return name, tag, digest
    return rest, "", digest


def check_images(objects: list[Obj], *, pinned: bool) -> list[str]:
    """The stack's containers all run the one image; `pinned` (an overlay): every image
    has a tag or digest and none is `latest`; unpinned (the base): the bare name, for
    an overlay's `images:` to set."""
    problems = []
    for c in containers(objects):
        image = c.spec.get("image", "")
        name, tag, digest = split_image(image)
        ours = role_of(c.workload) is not None
        if not pinned:
            if ours and image != IMAGE:
                problems.append(f"{c.where}: image {image!r}, the base names {IMAGE!r}")
            continue
        if not digest and tag in ("", "latest"):
            problems.append(f"{c.where}: image {image!r} is not pinned (tag or digest)")
        if ours and name.rsplit("/", 1)[-1] != IMAGE:
            problems.append(f"{c.where}: image {image!r} is not the stack's {IMAGE}")
    return problems


def check_autoscalers(objects: list[Obj]) -> list[str]:
    """Each HPA scales a rendered Deployment, which then leaves `replicas` to it."""
    problems = []
    deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        ref, spec = hpa["spec"]["scaleTargetRef"], hpa["spec"]
        target = deployments.get(ref.get("name")) if ref.get("kind") == "Deployment" else None
        if target is None or ref.get("apiVersion") != "apps/v1":
            problems.append(f"{ident(hpa)}: scales {ref}, which is not rendered")
            continue
        if "replicas" in target["spec"]:
            problems.append(f"{ident(target)}: sets replicas although {ident(hpa)} owns them")
        if spec.get("minReplicas", 1) > spec["maxReplicas"]:
            problems.append(f"{ident(hpa)}: minReplicas above maxReplicas")
    return problems


CHECKS = [
    check_probes,
    check_resources,
    check_security,
    check_writable_paths,
    check_disruption_budgets,
    check_network_policies,
    check_secret_references,
    check_autoscalers,
]
