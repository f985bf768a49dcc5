"""The Secrets the manifests reference are the ones the bootstrap makes: each role reads
its own Secret (astra-<role>) and no other's, for exactly the keys the bootstrap writes
to <role>/env, which `kubectl create secret generic --from-env-file` turns into a
Secret; the README names every Secret and key an operator must create."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.containers.bootstrap import bootstrap
from stack.containers.run import read_env_file
from tests.kubernetes.manifests import DEPLOY, Obj, containers, pod_spec, workloads
from tests.kubernetes.policy import role_of

README = DEPLOY / "README.md"
# Keys an operator adds to what the bootstrap wrote (README: "Create the Secrets").
PROD_DATABASES = {"users", "trading", "nft"}


@pytest.fixture(scope="module")
def bootstrapped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("secrets")
    bootstrap(out, generate=True, redis_base_url="redis://redis:6379/0")
    return out


def referenced(objects: list[Obj]) -> dict[str, dict[str, set[str]]]:
    """role -> Secret name -> the keys its containers read (env and volumes)."""
    out: dict[str, dict[str, set[str]]] = {}
    for c in containers(objects):
        role = role_of(c.workload) or c.workload["metadata"]["name"]
        mine = out.setdefault(role, {})
        for env in c.spec.get("env", []) or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                mine.setdefault(ref["name"], set()).add(ref["key"])
        for source in c.spec.get("envFrom", []) or []:
            if "secretRef" in source:
                mine.setdefault(source["secretRef"]["name"], set()).add("*")
    for workload in workloads(objects):
        role = role_of(workload) or workload["metadata"]["name"]
        for volume in pod_spec(workload).get("volumes", []) or []:
            if "secret" in volume:
                out[role].setdefault(volume["secret"]["secretName"], set()).add("(volume)")
    return out


def test_each_role_reads_its_own_secret_for_the_bootstrap_keys(
    objects: list[Obj], bootstrapped: Path
) -> None:
    prod = any(o["kind"] == "Deployment" and "ASTRA_DATABASE_URL" in str(o) for o in objects)
    refs = referenced(objects)
    for workload in workloads(objects):
        role = role_of(workload)
        if role is None:
            continue
        written = set(read_env_file(bootstrapped / role / "env"))
        assert written, f"the bootstrap gives {role} nothing"
        if prod and role in PROD_DATABASES:
            written.add("ASTRA_DATABASE_URL")
        names = set(refs[role])
        own = f"astra-{role}"
        assert refs[role].get(own) == written, f"{role}: reads {refs[role].get(own)}, has {written}"
        extra = names - {own, "astra-users-signing-key"}
        assert not extra, f"{role} reads another role's Secret: {extra}"


def test_redis_reads_the_bootstrap_acl_file(dev: list[Obj], bootstrapped: Path) -> None:
    assert (bootstrapped / "redis" / "users.acl").read_text().startswith("user default off")
    redis = next(w for w in workloads(dev) if w["metadata"]["name"] == "redis")
    volume = next(v for v in pod_spec(redis)["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == "astra-redis-acl"
    args = pod_spec(redis)["containers"][0]["args"]
    mount = next(m for m in pod_spec(redis)["containers"][0]["volumeMounts"]
                 if m["name"] == volume["name"])  # fmt: skip
    assert args[args.index("--aclfile") + 1] == f"{mount['mountPath']}/users.acl"


def test_the_readme_says_how_to_make_every_secret(objects: list[Obj]) -> None:
    text = README.read_text()
    for role, secrets in referenced(objects).items():
        for name, keys in secrets.items():
            assert f"`{name}`" in text, f"README does not say how to create {name} ({role})"
            for key in keys - {"(volume)", "*"}:
                assert key in text, f"README does not name {name}'s key {key}"
