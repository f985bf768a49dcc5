"""A Sentinel-managed Redis on free ports: a primary, a replica and three sentinels.

    group = SentinelGroup(tmp_path).start()   # replica in sync, sentinels agreed
    group.sentinels                           # [("127.0.0.1", port), ...]
    group.primary.kill(); group.until_promoted(group.replica)

Real processes only: `redis-server` (its `--sentinel` mode is Debian's
`redis-sentinel`). Fast failure detection (1 s down-after) so a test stays short.

To make the replica miss writes the primary acknowledged (`stall_replication`) the
replica is paused and the primary handed more than the kernel's socket buffers hold
(the replication stream queues in the primary's own memory, behind it whatever comes
next): a pause alone would not do, the buffers take a short stream for it, and a
proxy in the link would not either, Sentinel "fixes" a replica whose primary address
differs from the one it monitors.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from stack.netutil import free_port
from stack.redis_server import RedisServer

MASTER = "astra"


def _ask(port: int, *command: str) -> str:
    """One inline command, the raw reply text (enough for INFO and SENTINEL answers)."""
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall((" ".join(command) + "\r\n").encode())
        sock.settimeout(0.5)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks).decode(errors="replace")


class SentinelGroup:
    def __init__(self, root: Path, sentinels: int = 3) -> None:
        self.root = root
        self.primary = RedisServer(root / "primary")
        self.replica = RedisServer(root / "replica", extra_args=("--replicaof", "127.0.0.1", "0"))
        self._sentinel_ports = [free_port("127.0.0.1") for _ in range(sentinels)]
        self._sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self._sentinel_ports]

    @property
    def sentinels_setting(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.sentinels)

    def start(self, timeout: float = 30.0) -> SentinelGroup:
        self.primary.start()
        self.replica.extra_args = ("--replicaof", "127.0.0.1", str(self.primary.port))
        self.replica.start()
        for n, port in enumerate(self._sentinel_ports):
            folder = self.root / f"sentinel-{n}"
            folder.mkdir(parents=True, exist_ok=True)
            conf = folder / "sentinel.conf"  # Sentinel rewrites it: one file each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\nlogfile {folder / 'sentinel.log'}\n"
                "sentinel resolve-hostnames no\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 5000\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            self._sentinels.append(
                subprocess.Popen(
                    [self.primary.binary, str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        self._until(self._ready, timeout, "replica in sync and every sentinel seeing the rest")
        return self

    def _ready(self) -> bool:
        try:
            if "master_link_status:up" not in _ask(self.replica.port, "INFO", "replication"):
                return False
            if not self._sentinel_ports:  # a bare primary and replica
                return True
            others = len(self._sentinel_ports) - 1
            for port in self._sentinel_ports:
                reply = _ask(port, "SENTINEL", "SENTINELS", MASTER)
                if reply.count("name") < others:  # each peer is a map with a name field
                    return False
            replicas = _ask(self._sentinel_ports[0], "SENTINEL", "REPLICAS", MASTER)
            return str(self.replica.port) in replicas
        except OSError:
            return False

    def primary_port(self) -> int | None:
        """The port the sentinels name as primary now."""
        try:
            reply = _ask(self._sentinel_ports[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        except OSError:
            return None
        numbers = [int(line) for line in reply.split() if line.isdigit()]
        return numbers[-1] if numbers else None

    def until_promoted(self, server: RedisServer, timeout: float = 30.0) -> float:
        """Seconds until the sentinels name `server` primary and it says so itself."""
        started = time.monotonic()

        def promoted() -> bool:
            try:
                role = _ask(server.port, "INFO", "replication")
            except OSError:
                return False
            return self.primary_port() == server.port and "role:master" in role

        self._until(promoted, timeout, f"port {server.port} promoted")
        return time.monotonic() - started

    @staticmethod
    def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise TimeoutError(f"not within {timeout:g} s: {what}")

    def stall_replication(self, filler_bytes: int = 48_000_000) -> None:
        """From now on the replica gets nothing the primary takes (until `resume`)."""
        self.pause(self.replica)
        with socket.create_connection(("127.0.0.1", self.primary.port), timeout=10) as sock:
            header = f"*3\r\n$3\r\nSET\r\n$6\r\nfiller\r\n${filler_bytes}\r\n".encode()
            sock.sendall(header + b"x" * filler_bytes + b"\r\n")
            assert sock.recv(16).startswith(b"+OK")

    def pause(self, server: RedisServer) -> None:
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)

    def resume(self, server: RedisServer) -> None:
        assert server.process is not None
        server.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        for process in self._sentinels:
            process.kill()
            process.wait(5)
        for server in (self.replica, self.primary):
            if server.process is not None and server.process.poll() is None:
                self.resume(server)
            server.kill()
