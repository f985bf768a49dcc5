"""A six-node Redis Cluster on free ports: three primaries, one replica each (the
cluster tests and `make bench-replication --cluster` run one; never 6379).

    cluster = LocalCluster(tmp_path).start()   # every slot served, replicas in sync
    cluster.url                                 # a seed node for the cluster client
    victim = cluster.primary_for("astra.trading.trade_executed.v1")
    victim.kill(); cluster.until_failed_over(victim)

Real processes only: `redis-server --cluster-enabled yes` and `redis-cli --cluster
create`. A short node timeout (1.5 s) so a failover takes seconds, not the default
15 s. Each node also needs its cluster-bus port (port + 10000) free.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from redis.crc import key_slot

from stack.netutil import free_port
from stack.redis_server import RedisServer

NODE_TIMEOUT_MS = 1500


def ask(port: int, *command: str) -> str:
    """One command through redis-cli, its reply as printed (enough for INFO, CLUSTER *)."""
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *command],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return done.stdout


def _bus_port_free(port: int) -> bool:
    if port + 10000 > 65535:
        return False
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port + 10000))
        except OSError:
            return False
    return True


def _ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port("127.0.0.1")
        if port not in ports and _bus_port_free(port):
            ports.append(port)
    return ports


class LocalCluster:
    def __init__(self, root: Path, primaries: int = 3) -> None:
        self.root = root
        self.nodes = [
            RedisServer(
                root / f"node-{port}",
                port=port,
                appendonly=True,
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(root / f"node-{port}" / "nodes.conf"),
                    "--cluster-node-timeout",
                    str(NODE_TIMEOUT_MS),
                    "--appendfsync",
                    "everysec",
                ),
            )
            for port in _ports(primaries * 2)
        ]
        self.primaries = primaries

    @staticmethod
    def available() -> str | None:
        """Why this machine cannot run one (None: it can)."""
        for tool in ("redis-server", "redis-cli"):
            if shutil.which(tool) is None:
                return f"{tool} not installed (apt-get install redis-server redis-tools)"
        return None

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout: float = 60.0) -> LocalCluster:
        for node in self.nodes:
            node.start()
        created = subprocess.run(
            [
                "redis-cli", "--cluster", "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas", "1", "--cluster-yes",
            ],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(f"cluster create failed: {created.stdout}{created.stderr}")
        self.until(self._healthy, timeout, "every node sees every slot served and in sync")
        return self

    def _healthy(self) -> bool:
        for node in self.nodes:
            if not node.running:
                continue
            info = ask(node.port, "CLUSTER", "INFO")
            if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
                return False
        return all(self._replica_in_sync(n) for n in self.nodes if n.running)

    def _replica_in_sync(self, node: RedisServer) -> bool:
        info = ask(node.port, "INFO", "replication")
        if "role:slave" not in info:
            return True
        return "master_link_status:up" in info

    def role(self, node: RedisServer) -> str:
        info = ask(node.port, "INFO", "replication")
        return "primary" if "role:master" in info else "replica"

    def primary_for(self, key: str) -> RedisServer:
        """The node now serving `key`'s slot as primary."""
        slot = key_slot(key.encode())
        for node in self.nodes:
            if node.running and self._serves(node, slot):
                return node
        raise RuntimeError(f"no primary serves slot {slot}")

    def _serves(self, node: RedisServer, slot: int) -> bool:
        for line in ask(node.port, "CLUSTER", "NODES").splitlines():
            parts = line.split()
            if len(parts) < 8 or "myself" not in parts[2] or "master" not in parts[2]:
                continue
            for span in parts[8:]:
                if span.startswith("["):
                    continue  # a slot being migrated
                low, _, high = span.partition("-")
                if int(low) <= slot <= int(high or low):
                    return True
        return False

    def primary_key_counts(self) -> list[int]:
        """DBSIZE of each live primary."""
        return [
            int(ask(n.port, "DBSIZE").strip() or 0)
            for n in self.nodes
            if n.running and self.role(n) == "primary"
        ]

    def until_failed_over(self, dead: RedisServer, timeout: float = 30.0) -> None:
        """Wait until every live node says every slot is served again (the dead
        primary's replica promoted) and `primaries` live primaries exist."""

        def promoted() -> bool:
            live = [n for n in self.nodes if n.running]
            if sum(self.role(n) == "primary" for n in live) < self.primaries:
                return False
            return all(
                "cluster_state:ok" in (info := ask(n.port, "CLUSTER", "INFO"))
                and "cluster_slots_ok:16384" in info
                for n in live
            )

        self.until(promoted, timeout, f"a replica promoted in place of :{dead.port}")

    @staticmethod
    def until(check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise TimeoutError(f"not within {timeout:.0f} s: {what}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
