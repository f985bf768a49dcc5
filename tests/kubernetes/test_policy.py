"""The rules of policy.py hold for the base and both overlays, and each rule catches
its own breakage: every check is run on a copy of the dev render broken on purpose."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from tests.kubernetes import policy
from tests.kubernetes.manifests import Obj, named, pod_spec

Check = Callable[[list[Obj]], list[str]]


@pytest.mark.parametrize("check", policy.CHECKS, ids=lambda c: c.__name__)
def test_every_render_holds_to(objects: list[Obj], check: Check) -> None:
    problems = check(objects)
    assert not problems, "\n".join(problems)


def test_the_overlays_pin_the_image_and_the_base_leaves_it_to_them(
    base: list[Obj], dev: list[Obj], prod: list[Obj]
) -> None:
    assert policy.check_images(base, pinned=False) == []
    for objects in (dev, prod):
        problems = policy.check_images(objects, pinned=True)
        assert not problems, "\n".join(problems)
    # the base alone would run `astratrade` (:latest): it is no deployment by itself
    assert policy.check_images(base, pinned=True)


def test_production_requests_what_it_may_use(prod: list[Obj]) -> None:
    problems = policy.check_guaranteed(prod)
    assert not problems, "\n".join(problems)


# -- each check on a broken copy ----------------------------------------------------


def _pod(objects: list[Obj], name: str, kind: str = "Deployment") -> Obj:
    return pod_spec(named(objects, kind, name))


def _main(objects: list[Obj], name: str, kind: str = "Deployment") -> Obj:
    container: Obj = _pod(objects, name, kind)["containers"][0]
    return container


def _init(objects: list[Obj], name: str) -> Obj:
    container: Obj = _pod(objects, name)["initContainers"][0]
    return container


def _env(container: Obj, variable: str) -> Obj:
    env: Obj = next(e for e in container["env"] if e["name"] == variable)
    return env


def _drop(objects: list[Obj], kind: str, name: str) -> None:
    objects.remove(named(objects, kind, name))


Breakage = Callable[[list[Obj]], object]
BREAKAGES: list[tuple[Breakage, Check, str]] = []


def breaks(check: Check, expected: str) -> Callable[[Breakage], Breakage]:
    """Register a breakage of the dev render that `check` must report as `expected`."""

    def register(breakage: Breakage) -> Breakage:
        BREAKAGES.append((breakage, check, expected))
        return breakage

    return register


@breaks(policy.check_probes, "no readinessProbe")
def no_readiness(o: list[Obj]) -> None:
    _main(o, "gateway").pop("readinessProbe")


@breaks(policy.check_probes, "not one it exposes")
def liveness_elsewhere(o: list[Obj]) -> None:
    _main(o, "trading")["livenessProbe"]["httpGet"]["port"] = 9999


@breaks(policy.check_probes, "gateway listens on 8080")
def port_not_the_roles(o: list[Obj]) -> None:
    _main(o, "gateway")["ports"][0]["containerPort"] = 8000


@breaks(policy.check_probes, "not /health/ready")
def readiness_path(o: list[Obj]) -> None:
    _main(o, "nft")["readinessProbe"]["httpGet"]["path"] = "/health/live"


@breaks(policy.check_probes, "StatefulSet/redis container redis: no livenessProbe")
def redis_without_liveness(o: list[Obj]) -> None:
    _main(o, "redis", "StatefulSet").pop("livenessProbe")


@breaks(policy.check_probes, "on a one-shot init container")
def probe_on_init(o: list[Obj]) -> None:
    _init(o, "social")["readinessProbe"] = {"tcpSocket": {"port": 1}}


@breaks(policy.check_resources, "initContainer log-file-to-null: no memory limit")
def init_without_memory_limit(o: list[Obj]) -> None:
    _init(o, "users")["resources"]["limits"].pop("memory")


@breaks(policy.check_resources, "above limit")
def request_above_limit(o: list[Obj]) -> None:
    _main(o, "sd")["resources"]["requests"]["memory"] = "1Gi"


@breaks(policy.check_security, "users is 10011")
def another_roles_uid(o: list[Obj]) -> None:
    _main(o, "users")["securityContext"]["runAsUser"] = 10012


@breaks(policy.check_security, "pod runAsUser 10010, social is 10015")
def pod_uid(o: list[Obj]) -> None:
    _pod(o, "social")["securityContext"]["runAsUser"] = 10010


@breaks(policy.check_security, "readOnlyRootFilesystem")
def writable_root(o: list[Obj]) -> None:
    _main(o, "gamification")["securityContext"]["readOnlyRootFilesystem"] = False


@breaks(policy.check_security, "capabilities")
def added_capability(o: list[Obj]) -> None:
    _main(o, "redis", "StatefulSet")["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]


@breaks(policy.check_security, "allowPrivilegeEscalation")
def escalation(o: list[Obj]) -> None:
    _init(o, "gateway")["securityContext"].pop("allowPrivilegeEscalation")


@breaks(policy.check_security, "seccompProfile")
def no_seccomp(o: list[Obj]) -> None:
    _pod(o, "sd")["securityContext"].pop("seccompProfile")
    _main(o, "sd")["securityContext"].pop("seccompProfile")


@breaks(policy.check_security, "automountServiceAccountToken")
def api_token(o: list[Obj]) -> None:
    _pod(o, "trading").pop("automountServiceAccountToken")


@breaks(policy.check_writable_paths, "/tmp is not on a volume")
def no_tmp(o: list[Obj]) -> None:
    mounts = _main(o, "social")["volumeMounts"]
    mounts[:] = [m for m in mounts if m["mountPath"] != "/tmp"]


@breaks(policy.check_writable_paths, "no such volume")
def mount_without_volume(o: list[Obj]) -> None:
    _main(o, "users")["volumeMounts"].append({"name": "nope", "mountPath": "/x"})


@breaks(policy.check_disruption_budgets, "Deployment/trading: 0 disruption budgets")
def no_budget(o: list[Obj]) -> None:
    _drop(o, "PodDisruptionBudget", "trading")


@breaks(policy.check_disruption_budgets, "also selects")
def budget_too_wide(o: list[Obj]) -> None:
    selector = {"matchLabels": {"app.kubernetes.io/part-of": "astratrade"}}
    named(o, "PodDisruptionBudget", "sd")["spec"]["selector"] = selector


@breaks(policy.check_disruption_budgets, "blocks every drain")
def budget_blocks_drains(o: list[Obj]) -> None:
    spec = named(o, "PodDisruptionBudget", "redis")["spec"]
    spec.pop("maxUnavailable")
    spec["minAvailable"] = 1


@breaks(policy.check_network_policies, "no default-deny")
def no_default_deny(o: list[Obj]) -> None:
    _drop(o, "NetworkPolicy", "default-deny-ingress")


@breaks(policy.check_network_policies, "open to any source: Deployment/sd")
def sd_open(o: list[Obj]) -> None:
    named(o, "NetworkPolicy", "sd")["spec"]["ingress"][0].pop("from")


@breaks(policy.check_network_policies, "Deployment/users: no policy lets anything in")
def users_unreachable(o: list[Obj]) -> None:
    _drop(o, "NetworkPolicy", "users")


@breaks(policy.check_network_policies, "neither this namespace's pods nor Prometheus")
def any_namespace(o: list[Obj]) -> None:
    named(o, "NetworkPolicy", "redis")["spec"]["ingress"][0]["from"].append(
        {"namespaceSelector": {}}
    )


@breaks(policy.check_network_policies, "port 9000 is not one")
def policy_port(o: list[Obj]) -> None:
    named(o, "NetworkPolicy", "services")["spec"]["ingress"][0]["ports"][0]["port"] = 9000


@breaks(policy.check_secret_references, "Secret/astra-users: a Secret in the manifests")
def secret_object(o: list[Obj]) -> None:
    data = {"ASTRA_REGISTRY__TOKEN": "c2VjcmV0"}
    o.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "astra-users"},
              "data": data})  # fmt: skip


@breaks(policy.check_secret_references, "ASTRA_GATEWAY_OPERATOR_TOKEN is not from a Secret")
def literal_token(o: list[Obj]) -> None:
    env = _env(_main(o, "gateway"), "ASTRA_GATEWAY_OPERATOR_TOKEN")
    env.pop("valueFrom")
    env["value"] = "0123456789abcdef"


@breaks(policy.check_secret_references, "looks like a secret")
def url_in_config(o: list[Obj]) -> None:
    config = next(c for c in o if c["kind"] == "ConfigMap" and "ASTRA_ENV" in c["data"])
    config["data"]["ASTRA_REDIS_ADDRESS"] = "redis://users:pw@redis:6379/0"


@breaks(policy.check_autoscalers, "not rendered")
def hpa_target(o: list[Obj]) -> None:
    named(o, "HorizontalPodAutoscaler", "social")["spec"]["scaleTargetRef"]["name"] = "feeds"


@breaks(policy.check_autoscalers, "owns them")
def hpa_and_replicas(o: list[Obj]) -> None:
    named(o, "Deployment", "gateway")["spec"]["replicas"] = 2


@pytest.mark.parametrize(
    ("breakage", "check", "expected"),
    BREAKAGES,
    ids=[breakage.__name__ for breakage, _, _ in BREAKAGES],
)
def test_each_check_catches_its_breakage(
    dev: list[Obj], breakage: Breakage, check: Check, expected: str
) -> None:
    broken = copy.deepcopy(dev)
    assert check(broken) == []
    breakage(broken)
    problems = check(broken)
    assert any(expected in p for p in problems), problems


def test_the_image_check_catches_latest_and_strangers(dev: list[Obj]) -> None:
    broken = copy.deepcopy(dev)
    _main(broken, "gateway")["image"] = "astratrade:latest"
    _main(broken, "users")["image"] = "example/other:1.0"
    _main(broken, "redis", "StatefulSet")["image"] = "redis"
    problems = "\n".join(policy.check_images(broken, pinned=True))
    assert "gateway: image 'astratrade:latest' is not pinned" in problems
    assert "not the stack's astratrade" in problems
    assert "image 'redis' is not pinned" in problems
    assert policy.split_image("registry:5000/astratrade@sha256:ab") == (
        "registry:5000/astratrade", "", "sha256:ab")  # fmt: skip


def test_the_guaranteed_check_catches_overcommit(prod: list[Obj]) -> None:
    broken = copy.deepcopy(prod)
    _main(broken, "trading")["resources"]["requests"]["cpu"] = "100m"
    assert any("trading" in p for p in policy.check_guaranteed(broken))


def test_quantities() -> None:
    assert policy.quantity("100m") == pytest.approx(0.1)
    assert policy.quantity("384Mi") == 384 * 2**20
    assert policy.quantity("1") == 1
    assert policy.quantity("1Gi") > policy.quantity("1000Mi")
