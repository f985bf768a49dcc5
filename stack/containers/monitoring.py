"""`python3 -m stack.containers.monitoring --out DIR`: the monitoring configs for containers.

The same templates (`monitoring/*.yml`) and rules (`alerts/`) as `astra up`, filled
with the compose services' names instead of 127.0.0.1 ports, written by the
`monitoring-config` one-shot into a volume that Prometheus, Alertmanager and the
blackbox exporter mount read-only. `ASTRA_DRILL=true` takes the drill profile's rules
(every window divided by 60) and 1 s intervals, as `astra up --drill` does.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from stack.containers.roles import GATEWAY_PORT
from stack.observe.monitoring import render_to, rule_files

# Compose service name and port of each monitoring part (compose/compose.observability.yaml).
ADDRESSES = {
    "observe": "sd:9099",
    "prometheus": "prometheus:9090",
    "alertmanager": "alertmanager:9093",
    "blackbox": "blackbox:9115",
    "redis_exporter": "redis-exporter:9121",
}


def fields(rules_dir: str, *, drill: bool, gateways: list[str]) -> dict[str, str]:
    return {
        "rules_dir": rules_dir,
        "scrape_interval": "1s" if drill else "5s",
        "evaluation_interval": "1s" if drill else "5s",
        **{f"{name}_address": address for name, address in ADDRESSES.items()},
        "gateway_health_targets": json.dumps([f"{g}/health/ready" for g in gateways]),
        "gateway_markets_targets": json.dumps([f"{g}/api/v1/trading/markets" for g in gateways]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m stack.containers.monitoring")
    parser.add_argument("--out", type=Path, required=True)
    # Where Prometheus finds the rules inside its own container (the volume's mount).
    parser.add_argument("--rules-dir", default="/etc/astra-monitoring/rules")
    args = parser.parse_args(argv)
    drill = os.environ.get("ASTRA_DRILL", "false").lower() in {"1", "true", "yes"}
    gateways = [f"http://gateway:{GATEWAY_PORT}"]  # the service name: Docker's DNS balances
    render_to(args.out, fields(args.rules_dir, drill=drill, gateways=gateways), rule_files(drill))
    for path in [args.out, *args.out.rglob("*")]:  # read by other images' own users
        path.chmod(0o755 if path.is_dir() else 0o644)
    print(f"monitoring configs in {args.out} ({'drill' if drill else 'normal'} profile)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
