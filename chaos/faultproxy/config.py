"""Settings of the fault proxy server, and the `toxiproxy-server`-style flags that set them.

    python -m chaos.faultproxy -host 127.0.0.1 -port 8474 -config proxies.json -seed 42

Flags win over `FAULTPROXY_*` environment variables, which win over the defaults.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

LoopName = Literal["auto", "asyncio", "uvloop"]


class FaultProxySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FAULTPROXY_", extra="ignore")

    host: str = "127.0.0.1"  # toxiproxy-server says "localhost"; one address family is clearer
    port: int = 8474  # 0 picks a free port
    config: Path | None = None  # JSON array of proxies, as POST /populate takes
    seed: int | None = None  # makes toxicity and jitter reproducible; None = from the clock
    log_level: str = "INFO"
    loop: LoopName = "auto"  # auto = uvloop when installed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.faultproxy",
        description="A Toxiproxy-compatible fault-injecting TCP proxy (API on -host:-port).",
    )
    # Single-dash long flags, as Go's flag package (and so toxiproxy-server) spells them.
    parser.add_argument("-host", "--host", help="host for the API to listen on")
    parser.add_argument("-port", "--port", type=int, help="port for the API (0: any free one)")
    parser.add_argument("-config", "--config", type=Path, help="JSON file of proxies to create")
    parser.add_argument("-seed", "--seed", type=int, help="seed for toxicity and jitter")
    parser.add_argument("-log-level", "--log-level", dest="log_level", help="DEBUG, INFO, ...")
    parser.add_argument("-loop", "--loop", choices=["auto", "asyncio", "uvloop"])
    parser.add_argument("-version", "--version", action="store_true", help="print the version")
    # Accepted so toxiproxy-server command lines work unchanged; metrics are always on.
    parser.add_argument("-proxy-metrics", "--proxy-metrics", action="store_true")
    parser.add_argument("-runtime-metrics", "--runtime-metrics", action="store_true")
    return parser


def parse_args(
    argv: Sequence[str] | None = None, base: FaultProxySettings | None = None
) -> tuple[FaultProxySettings, argparse.Namespace]:
    args = build_parser().parse_args(argv)
    settings = base if base is not None else FaultProxySettings()
    given = {
        key: value
        for key in ("host", "port", "config", "seed", "log_level", "loop")
        if (value := getattr(args, key)) is not None
    }
    return settings.model_copy(update=given), args
