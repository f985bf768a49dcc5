"""`python -m chaos.faultproxy`: toxiproxy-server's flags, -config, JSON logs, clean SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.faultproxy import VERSION
from stack.netutil import free_port
from tests.support.poll import poll_until_sync

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parents[2]


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_address() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own server)
        return json.loads(response.read())


def test_version_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "chaos.faultproxy", "-version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert VERSION in out.stdout


def test_serves_config_file_and_stops_on_sigterm(tmp_path: Path, echo_address: str) -> None:
    config = tmp_path / "proxies.json"
    config.write_text(
        json.dumps([{"name": "echo", "listen": "127.0.0.1:0", "upstream": echo_address}])
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "chaos.faultproxy", "-port", str(port), "-config", str(config),
         "-seed", "3"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> object:
            try:
                return _get(url + "/version")
            except OSError:
                return None

        assert poll_until_sync(ready, "the API to answer", timeout=15) == {"version": VERSION}
        proxies = _get(url + "/proxies")
        assert isinstance(proxies, dict)
        assert proxies["echo"]["upstream"] == echo_address
        assert proxies["echo"]["enabled"] is True
        # Data sent the instant the connection opens (before the proxy has dialled the
        # upstream) must get through; uvloop delivers it early (the default loop here).
        listen_port = int(proxies["echo"]["listen"].rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", listen_port), timeout=5) as sock:
            sock.sendall(b"early bird")
            got = b""
            while len(got) < 10:
                chunk = sock.recv(64)
                assert chunk, "closed before the echo came back"
                got += chunk
        assert got == b"early bird"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    messages = {line["msg"] for line in lines}
    assert {"started fault proxy", "populated proxies from file", "shutdown started"} <= messages
    started = next(line for line in lines if line["msg"] == "started fault proxy")
    assert started["logger"].startswith("chaos.faultproxy")
    assert started["seed"] == 3
