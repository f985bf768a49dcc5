"""A `redis-server` process of our own: used by `astra up` and by the test fixtures.

Never assumes the machine's Redis on 6379: it binds the port it is given (or a
free one) and keeps its data in its own directory.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from stack.netutil import free_port


class RedisServerError(RuntimeError):
    pass


class RedisServer:
    """One redis-server child process.

    server = RedisServer(Path("var/redis"), port=6390, appendonly=True)
    server.start()
    ...
    server.stop()
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        appendonly: bool = False,
        extra_args: tuple[str, ...] = (),
        binary: str | None = None,
        aclfile: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.appendonly = appendonly
        self.extra_args = extra_args
        self.aclfile = aclfile  # users and their rights; the `default` user is off in it
        self.binary = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "redis.log"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--logfile", str(self.log_file),
            "--daemonize", "no",
            "--protected-mode", "yes",
            *(("--aclfile", str(self.aclfile)) if self.aclfile else ()),
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.process is not None and self.process.poll() is None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Its own session: Ctrl-C on `astra up` must not reach Redis directly, or
        # Redis would be gone before the services finish and ack their batches.
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                log = self.log_file.read_text() if self.log_file.exists() else ""
                raise RedisServerError(f"redis-server exited: {err}{log[-2000:]}")
            if self.answers_ping():
                return
            time.sleep(0.01)
        raise RedisServerError(f"redis-server on port {self.port} not ready after {timeout}s")

    def answers_ping(self) -> bool:
        """Redis is up: PING answers PONG, or NOAUTH when it wants a user first."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait: Redis flushes its AOF before exiting."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: the abrupt outage chaos tests want."""
        self._signal(signal.SIGKILL, 5.0)

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None
