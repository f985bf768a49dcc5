"""Locust's own ceiling: how many requests/s one Locust process (or a master and N
workers) sends to an upstream that costs nothing, and the CPU it burns per request.
A capacity knee far below this ceiling was not set by the load generator.

    with trivial_upstream(run_dir) as url:
        print(measure(url, run_dir, users=50, seconds=15))

The upstream is Debian's nginx answering every path with a fixed JSON body from one
worker (`return 200`): no Python on the far side, so the figure is Locust's.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from loadtests.cpu import MACHINE, Sampler

LOCUSTFILE = Path(__file__).with_name("ceiling_locustfile.py")
ROOT = Path(__file__).resolve().parents[1]
NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        default_type application/json;
        location / {{ return 200 '[{{"symbol":"AAPL"}}]'; }}
    }}
}}
"""


class CeilingError(RuntimeError):
    """The trivial upstream or the Locust run could not be had."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def trivial_upstream(run_dir: Path) -> Iterator[str]:
    """nginx on a free loopback port for as long as the block runs; its URL."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise CeilingError("nginx is not installed (apt-get install nginx)")
    home = run_dir / "ceiling-nginx"
    home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    conf = home / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=home, port=port))
    process = subprocess.Popen(  # noqa: S603 - Debian's nginx, our config
        [binary, "-c", str(conf), "-p", str(home), "-e", str(home / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise CeilingError(f"nginx did not answer; see {home / 'error.log'}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def measure(
    url: str, run_dir: Path, users: int = 50, seconds: float = 15.0, workers: int = 0
) -> dict[str, Any]:
    """Run the `Ceiling` users against `url` for `seconds`: requests/s, and the CPU the
    Locust processes used (cores, and milliseconds of CPU per request)."""
    prefix = run_dir / "ceiling"
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--loglevel", "WARNING"]
    main = [
        *base, "--headless", "--host", url, "-u", str(users), "-r", str(users),
        "-t", f"{seconds:g}s", "--csv", str(prefix), "--only-summary",
        "--exit-code-on-error", "0",
    ]  # fmt: skip
    commands = [main]
    if workers:
        main += ["--master", "--master-bind-host", "127.0.0.1", "--expect-workers", str(workers)]
        commands += [[*base, "--worker", "--master-host", "127.0.0.1"]] * workers
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (run_dir / "ceiling-locust.log").open("ab") as log:
        processes = [
            subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=ROOT)  # noqa: S603
            for cmd in commands
        ]
        pids = {f"locust-{n}" if n else "locust": p.pid for n, p in enumerate(processes)}
        with Sampler(pids) as sampler:
            try:
                processes[0].wait(timeout=seconds + 60)
            finally:
                for process in processes:
                    try:
                        process.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        process.kill()
    used, wall = sampler.used()
    row = _aggregated(prefix.with_name(prefix.name + "_stats.csv"))
    requests = int(row["Request Count"])
    rps = float(row["Requests/s"])
    locust_cpu = sum(s for n, s in used.items() if n != MACHINE)
    return {
        "users": users,
        "workers": workers,
        "seconds": seconds,
        "requests": requests,
        "failures": int(row["Failure Count"]),
        "requests_per_s": round(rps, 1),
        "locust_cores": round(locust_cpu / wall, 2) if wall else None,
        "locust_cpu_ms_per_request": round(1000 * locust_cpu / (rps * wall), 3)
        if rps and wall
        else None,
    }


def _aggregated(path: Path) -> dict[str, str]:
    if not path.exists():
        raise CeilingError(f"locust wrote no {path.name}; see {path.parent / 'ceiling-locust.log'}")
    with path.open() as f:
        for row in csv.DictReader(f):
            if row.get("Name") == "Aggregated":
                return row
    raise CeilingError(f"{path} has no Aggregated row")
