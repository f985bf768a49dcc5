"""The pods run the image the way its entrypoint expects (stack/containers/run.py): each
role by name, listening where roles.py says, with its instance id and public URL from
the downward API, its run directory and log file where the process writes them, and
users' signing key where the service looks for it."""

from __future__ import annotations

from pathlib import Path

from backbone.config import RegistrySettings
from backbone.telemetry.logs import log_file
from services.users.config import Settings as UsersSettings
from stack.containers.roles import ROLES
from tests.kubernetes.manifests import ROOT, Obj, named, of_kind, pod_spec, workloads
from tests.kubernetes.policy import RUN_DIR, role_of


def _config(objects: list[Obj]) -> dict[str, str]:
    config = next(c for c in of_kind(objects, "ConfigMap") if "ASTRA_ENV" in c.get("data", {}))
    data: dict[str, str] = config["data"]
    return data


def _env(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", []) or []}


def test_each_role_runs_by_name_where_roles_py_says(objects: list[Obj]) -> None:
    seen = set()
    for workload in workloads(objects):
        role = role_of(workload)
        if role is None:
            continue
        seen.add(role)
        spec = ROLES[role]
        container = pod_spec(workload)["containers"][0]
        assert container["args"] == [role], "the entrypoint takes the role as its argument"
        assert container["ports"][0]["containerPort"] == spec.port
        assert container["readinessProbe"]["httpGet"]["path"] == spec.health_path
        env = _env(container)
        listen = "ASTRA_GATEWAY_PORT" if role == "gateway" else "ASTRA_PORT"
        if spec.registers:  # the entrypoint's defaults, made explicit
            assert env[listen]["value"] == str(spec.port)
    assert seen == {"gateway", "users", "trading", "gamification", "nft", "social", "sd"}


def test_instance_id_and_public_url_come_from_the_pod(objects: list[Obj]) -> None:
    for workload in workloads(objects):
        role = role_of(workload)
        if role is None or not ROLES[role].registers:
            continue
        container = pod_spec(workload)["containers"][0]
        names = [e["name"] for e in container["env"]]
        env = _env(container)
        assert env["ASTRA_INSTANCE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        url = "ASTRA_GATEWAY_PUBLIC_URL" if role == "gateway" else "ASTRA_PUBLIC_URL"
        for variable in (url, "ASTRA_METRICS_URL"):
            assert env[variable]["value"] == f"http://$(POD_IP):{ROLES[role].port}"
            # $(POD_IP) expands only when POD_IP is defined earlier in the list
            assert names.index("POD_IP") < names.index(variable), variable


def test_the_run_directory_is_the_image_and_the_config_one(objects: list[Obj]) -> None:
    dockerfile = (ROOT / "compose" / "Dockerfile").read_text()
    assert f"ASTRA_RUN_DIR={RUN_DIR}" in dockerfile
    assert _config(objects)["ASTRA_RUN_DIR"] == RUN_DIR


def test_the_log_file_the_process_opens_is_pointed_at_dev_null(objects: list[Obj]) -> None:
    """The process logs to <run dir>/log/<instance id>.jsonl beside stderr; the init
    container's link must be exactly that file, or the emptyDir fills up again."""
    checked = 0
    for workload in workloads(objects):
        role = role_of(workload)
        if role is None or not ROLES[role].registers:
            continue
        spec = pod_spec(workload)
        init = next(c for c in spec["initContainers"] if c["name"] == "log-file-to-null")
        expected = log_file(Path(RUN_DIR) / "log", "unused", "$(ASTRA_INSTANCE_ID)")
        assert init["command"] == ["ln", "-sfn", "/dev/null", str(expected)]
        instance = _env(init)["ASTRA_INSTANCE_ID"]["valueFrom"]
        assert instance == _env(spec["containers"][0])["ASTRA_INSTANCE_ID"]["valueFrom"]
        mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
        main = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["log"] == main["log"] == str(expected.parent)
        checked += 1
    assert checked == 6


def test_users_finds_the_signing_key_where_each_overlay_puts_it(
    dev: list[Obj], prod: list[Obj]
) -> None:
    settings = UsersSettings(run_dir=Path(RUN_DIR), registry=RegistrySettings(token="k" * 32))
    # prod: copied from the Secret, 0600, to the path the service reads by default
    spec = pod_spec(named(prod, "Deployment", "users"))
    init = next(c for c in spec["initContainers"] if c["name"] == "signing-key")
    mode, source, target = init["command"][2], init["command"][3], init["command"][4]
    assert init["command"][:2] == ["install", "-m"]
    assert int(mode, 8) & 0o077 == 0, "services/users/keyfile.py refuses a key others may read"
    assert target == str(settings.key_path)
    assert "ASTRA_SIGNING_KEY_PATH" not in _env(spec["containers"][0])
    mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts[str(Path(source).parent)]]["secret"]["secretName"] == (
        "astra-users-signing-key"
    )
    assert volumes[mounts[str(Path(target).parent)]]["emptyDir"]["medium"] == "Memory"
    # dev: beside the SQLite file, on the volume claim
    spec = pod_spec(named(dev, "Deployment", "users"))
    path = _env(spec["containers"][0])["ASTRA_SIGNING_KEY_PATH"]["value"]
    data = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "data")
    assert path.startswith(data["mountPath"] + "/")
    claim = next(v for v in spec["volumes"] if v["name"] == "data")["persistentVolumeClaim"]
    assert named(dev, "PersistentVolumeClaim", claim["claimName"])


def test_dev_redis_is_compose_s_and_prod_points_elsewhere(dev: list[Obj], prod: list[Obj]) -> None:
    env = dict(
        line.split("=", 1)
        for line in (ROOT / "compose" / ".env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    redis = named(dev, "StatefulSet", "redis")
    assert pod_spec(redis)["containers"][0]["image"] == env["REDIS_IMAGE"]
    service = named(dev, "Service", "redis")
    assert service["spec"]["clusterIP"] == "None"
    assert redis["spec"]["serviceName"] == service["metadata"]["name"]
    port = service["spec"]["ports"][0]["port"]
    assert _config(dev)["ASTRA_REDIS_ADDRESS"] == f"{service['metadata']['name']}:{port}"
    assert not of_kind(prod, "StatefulSet")
    assert _config(prod)["ASTRA_REDIS_ADDRESS"] != _config(dev)["ASTRA_REDIS_ADDRESS"]
    assert _config(prod)["ASTRA_ENV"] == "prod"
