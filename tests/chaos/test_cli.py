"""`python -m chaos.faultproxy`: toxiproxy-server's flags, -config, JSON logs, clean SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from chaos.faultproxy import VERSION
from stack.netutil import free_port
from tests.support.poll import poll_until_sync

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parents[2]


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


def test_serves_config_file_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "proxies.json"
    config.write_text(
        json.dumps([{"name": "redis", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:6390"}])
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
        assert proxies["redis"]["upstream"] == "127.0.0.1:6390"
        assert proxies["redis"]["enabled"] is True
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
