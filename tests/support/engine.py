"""A private Docker engine for the container tests: started here, stopped here, host restored.

    with DockerEngine.start(tmp) as engine:       # own dockerd: data, exec root, socket
        base = engine.base_image()                # official slim Python, else debootstrap
        engine.build(...)
        engine.compose(files, "up", "-d")

Debian's `docker.io` (its dockerd and its 20.10 client at /usr/bin/docker: a newer
client elsewhere on PATH may lack the legacy builder) and `docker-compose` (1.29) are
installed when missing and the machine allows (root and apt-get); otherwise the
caller skips with `EngineUnavailable`'s reason. No registry may be reachable: the
base image is then made offline with `debootstrap --variant=minbase` (python3, venv,
CA certificates) and `docker import`, with the host's CA bundle inside, so pip in a
build trusts what the host trusts. dockerd changes the host (bridges, iptables
chains, `ip_forward`, netns mounts under its exec root): what it changes is recorded
before it starts and undone after it stops, containers first.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKER = "/usr/bin/docker"  # Debian's client, matched to its dockerd
DOCKERD = "/usr/sbin/dockerd"
COMPOSE = "/usr/bin/docker-compose"
PACKAGES = {DOCKERD: "docker.io", DOCKER: "docker.io", COMPOSE: "docker-compose",
            "/usr/sbin/debootstrap": "debootstrap"}  # fmt: skip
LOCAL_BASE = "astratrade-base:bookworm"  # the offline base image's tag
# What the offline base holds: Python 3.11 with venv, TLS trust, and Redis,
# Prometheus and Alertmanager for the test overlay (compose/compose.test.yaml).
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "redis-server", "redis-tools",
                 "prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter",
                 "prometheus-redis-exporter", "wget")  # fmt: skip
CACHE = Path(os.environ.get("ASTRA_ENGINE_CACHE", "/var/cache/astratrade"))


class EngineUnavailable(RuntimeError):
    """This machine cannot run the engine; the message is the reason a test shows."""


def ensure_installed() -> None:
    missing = sorted({pkg for path, pkg in PACKAGES.items() if not Path(path).exists()})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise EngineUnavailable(
            f"needs {', '.join(missing)} (Debian packages) and root to install them"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    if subprocess.run(run, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        result = subprocess.run(run, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise EngineUnavailable(f"apt-get install {' '.join(missing)}: {result.stderr[-300:]}")


@dataclass
class HostState:
    """What dockerd may change on the host, to put back after it stops."""

    links: set[str]
    iptables: dict[str, str]  # iptables-save output by tool
    ip_forward: str

    @classmethod
    def read(cls) -> HostState:
        saved = {}
        for tool in ("iptables-save", "ip6tables-save"):
            if shutil.which(tool):
                out = subprocess.run([tool], capture_output=True, text=True, check=False)
                if out.returncode == 0:
                    saved[tool] = out.stdout
        return cls(
            links=_links(),
            iptables=saved,
            ip_forward=Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
        )

    def restore(self) -> list[str]:
        """Undo what changed; returns what was undone (for the test's log)."""
        undone = []
        for link in sorted(_links() - self.links):
            subprocess.run(["ip", "link", "delete", link], capture_output=True, check=False)
            undone.append(f"link {link}")
        for tool, rules in self.iptables.items():
            restore = tool.replace("-save", "-restore")
            now = subprocess.run([tool], capture_output=True, text=True, check=False).stdout
            if _rules(now) != _rules(rules) and shutil.which(restore):
                # iptables-restore replaces each table it is given, user chains and all;
                # a table dockerd made from nothing is given back empty, policies ACCEPT.
                given = rules + "".join(
                    _empty_table(table) for table in _tables(now) - _tables(rules)
                )
                subprocess.run([restore], input=given, text=True, capture_output=True, check=False)
                undone.append(f"{tool.split('-')[0]} rules")
        forward = Path("/proc/sys/net/ipv4/ip_forward")
        if forward.read_text().strip() != self.ip_forward:
            with contextlib.suppress(OSError):
                forward.write_text(self.ip_forward)
                undone.append(f"ip_forward={self.ip_forward}")
        return undone


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False)
    return {
        line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines() if ":" in line
    }


_BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}


def _tables(saved: str) -> set[str]:
    return {line[1:].strip() for line in saved.splitlines() if line.startswith("*")}


def _empty_table(table: str) -> str:
    chains = "".join(f":{chain} ACCEPT [0:0]\n" for chain in _BUILTIN_CHAINS.get(table, ()))
    return f"*{table}\n{chains}COMMIT\n"


def _rules(saved: str) -> list[str]:
    """iptables-save without its comments and counters, to compare two of them."""
    return [line.split(" [")[0] for line in saved.splitlines() if line and not line.startswith("#")]


@dataclass
class DockerEngine:
    root: Path
    process: subprocess.Popen[bytes]
    host: HostState
    env: dict[str, str] = field(default_factory=dict)
    log: Path = Path()

    @classmethod
    @contextlib.contextmanager
    def start(cls, root: Path, timeout: float = 60.0) -> Iterator[DockerEngine]:
        if os.geteuid() != 0:
            raise EngineUnavailable("dockerd needs root (this run is not root)")
        ensure_installed()
        root.mkdir(parents=True, exist_ok=True)
        # A short socket path (sun_path is 108 bytes) and short exec root (containerd's).
        short = Path(f"/run/astra-engine-{os.getpid()}")
        short.mkdir(parents=True, exist_ok=True)
        socket = short / "docker.sock"
        host = HostState.read()
        log = root / "dockerd.log"
        argv = [
            DOCKERD,
            f"--data-root={root / 'data'}",
            f"--exec-root={short / 'exec'}",
            f"--pidfile={short / 'docker.pid'}",
            f"--host=unix://{socket}",
            "--bridge=none",  # no docker0: compose makes the networks it needs
            "--storage-driver=overlay2",
            f"--containerd-namespace=astra-{os.getpid()}",
            f"--containerd-plugins-namespace=astra-{os.getpid()}-plugins",
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        engine = cls(root, process, host, {**os.environ, "DOCKER_HOST": f"unix://{socket}"}, log)
        engine.env.pop("DOCKER_CONTEXT", None)
        try:
            engine._wait(timeout)
            yield engine
        finally:
            engine.stop(short)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EngineUnavailable(f"dockerd exited: {self.log.read_text()[-600:]}")
            if self.docker("info", check=False, quiet=True).returncode == 0:
                return
            time.sleep(0.5)
        raise EngineUnavailable(f"dockerd did not answer in {timeout:g} s: {self.log}")

    def docker(
        self, *args: str, check: bool = True, quiet: bool = False, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [DOCKER, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {result.stderr[-2000:]}")
        return result

    def compose(
        self, files: Sequence[Path], *args: str, check: bool = True, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        argv = [COMPOSE, "--env-file", str(ROOT / "compose" / ".env")]
        for f in files:
            argv += ["-f", str(f)]
        env = {**self.env, "COMPOSE_DOCKER_CLI_BUILD": "0", "DOCKER_BUILDKIT": "0"}
        result = subprocess.run(
            [*argv, *args], env=env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"docker-compose {' '.join(args)}: {result.stderr[-3000:]}")
        return result

    def has_image(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False, quiet=True).returncode == 0

    def base_image(self, official: str) -> str:
        """`official` if it is here or can be pulled, else the offline Debian base."""
        if self.has_image(official):
            return official
        if self.docker("pull", official, check=False, timeout=60).returncode == 0:
            return official
        if self.has_image(LOCAL_BASE):
            return LOCAL_BASE
        cached = CACHE / f"base-bookworm-{_base_key()}.tar"
        if cached.exists():
            self.docker("load", "-i", str(cached), timeout=300)
            return LOCAL_BASE
        with local_rootfs() as rootfs:
            packed = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            imported = subprocess.run(
                [DOCKER, "import", "--change", f"ENV PATH={BASE_PATH}", "-", LOCAL_BASE],
                stdin=packed.stdout, env=self.env, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            packed.wait()
        if imported.returncode != 0:
            raise EngineUnavailable(f"docker import of the base failed: {imported.stderr[-500:]}")
        partial = cached.with_suffix(".partial")
        self.docker("save", "-o", str(partial), LOCAL_BASE, timeout=300)
        partial.replace(cached)  # the next engine (or CI on this machine) loads it
        return LOCAL_BASE

    def stop(self, short: Path) -> None:
        """Containers first (so none is left running), then the daemon, then the host."""
        with contextlib.suppress(Exception):
            ids = self.docker("ps", "-aq", check=False, timeout=60).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False, timeout=120)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        netns = short / "exec" / "netns"
        for mount in sorted(netns.glob("*")) if netns.exists() else ():
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)
        self.host.restore()
        shutil.rmtree(short, ignore_errors=True)


BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _base_key() -> str:
    """Names the cached base by what it holds: another package list, another base."""
    return hashlib.sha256(",".join(BASE_PACKAGES).encode()).hexdigest()[:12]


@contextlib.contextmanager
def local_rootfs() -> Iterator[Path]:
    """debootstrap (minbase) with BASE_PACKAGES into a folder, the host's CA trust in it."""
    CACHE.mkdir(parents=True, exist_ok=True)
    rootfs = CACHE / f"rootfs-{os.getpid()}"
    shutil.rmtree(rootfs, ignore_errors=True)
    try:
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             "bookworm", str(rootfs), "http://deb.debian.org/debian"],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if result.returncode != 0:
            raise EngineUnavailable(f"debootstrap failed: {result.stderr[-600:]}")
        # The host's bundle (a TLS-inspecting egress adds its own CA to it): pip in a
        # build then trusts what the host trusts.
        shutil.copyfile(
            "/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/ca-certificates.crt"
        )
        for extra in Path("/usr/local/share/ca-certificates").glob("*.crt"):
            target = rootfs / "usr/local/share/ca-certificates" / extra.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(extra, target)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        yield rootfs
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
