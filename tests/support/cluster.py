"""Test-side views of a local Redis Cluster (stack/redis_cluster.py runs it): which
keys each script touched, and whether any command crossed slots."""

from __future__ import annotations

import contextlib
import socket
import threading

from redis.crc import key_slot

from stack.redis_cluster import LocalCluster, ask

__all__ = ["LocalCluster", "ScriptSlotWatch", "ask", "cross_slot_errors"]


class ScriptSlotWatch:
    """Every key each Lua script touched, per run, read from `MONITOR` on every primary.

    Redis 7.0 lets a script touch keys of *different* slots as long as this node serves
    them all, so a multi-slot script can pass on one layout and fail on the next: this
    watch catches it on any layout. A script blocks its node while it runs, so the
    `lua` lines that follow an EVAL/EVALSHA line on a node are that script's commands.

        with ScriptSlotWatch(cluster) as watch:
            ...
        assert watch.multi_slot_runs() == []
    """

    def __init__(self, cluster: LocalCluster) -> None:
        self._cluster = cluster
        self._monitors: list[tuple[socket.socket, threading.Thread, list[bytes]]] = []
        self.runs: list[list[str]] = []  # per script run: "COMMAND key" of each call

    def __enter__(self) -> ScriptSlotWatch:
        for node in self._cluster.nodes:
            if node.running and self._cluster.role(node) == "primary":
                sock = socket.create_connection(("127.0.0.1", node.port), timeout=5)
                sock.sendall(b"MONITOR\r\n")
                assert sock.recv(5) == b"+OK\r\n"  # attached: every later command is streamed
                chunks: list[bytes] = []
                reader = threading.Thread(target=_read_all, args=(sock, chunks), daemon=True)
                reader.start()
                self._monitors.append((sock, reader, chunks))
        return self

    def __exit__(self, *exc: object) -> None:
        for sock, reader, chunks in self._monitors:
            with contextlib.suppress(OSError):  # a node killed meanwhile: its stream ended
                sock.sendall(b"QUIT\r\n")
            reader.join(10)
            sock.close()
            self._parse(b"".join(chunks).decode(errors="replace").replace("\r\n", "\n"))

    def _parse(self, out: str) -> None:
        current: list[str] | None = None
        for line in out.splitlines():
            _, _, rest = line.lstrip("+").partition(" [")
            origin, _, command = rest.partition("] ")
            words = [w.strip('"') for w in command.split('" "')]
            if not words or not words[0]:
                continue
            if origin.endswith(" lua"):
                if current is not None and len(words) > 1:
                    current.append(f"{words[0].upper()} {words[1]}")
                continue
            current = None
            if words[0].lower() in ("eval", "evalsha"):
                current = []
                self.runs.append(current)

    def multi_slot_runs(self) -> list[list[str]]:
        keyless = {"TIME"}
        found = []
        for run in self.runs:
            slots = {
                key_slot(call.split(" ", 1)[1].encode())
                for call in run
                if call.split(" ", 1)[0] not in keyless
            }
            if len(slots) > 1:
                found.append(run)
        return found


def _read_all(sock: socket.socket, chunks: list[bytes]) -> None:
    """Everything a MONITOR connection streams until the server closes it (QUIT)."""
    sock.settimeout(30)
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except OSError:
        pass


def cross_slot_errors(cluster: LocalCluster) -> list[str]:
    """CROSSSLOT error counters of the live nodes (then reset): a command sent across
    slots. (ERR says nothing: each connection's handshake earns a few on Redis 7.0.)"""
    found = []
    for node in cluster.nodes:
        if not node.running:
            continue
        for line in ask(node.port, "INFO", "errorstats").splitlines():
            if line.startswith("errorstat_CROSSSLOT"):
                found.append(f":{node.port} {line.strip()}")
        ask(node.port, "CONFIG", "RESETSTAT")
    return found
