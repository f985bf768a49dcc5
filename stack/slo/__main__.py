"""`python -m stack.slo generate [--check]`: the rules and promtool tests of alerts/slos.yaml."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stack.slo.rules import SPEC, generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.slo", description=__doc__)
    parser.add_argument("action", choices=["generate"])
    parser.add_argument("--check", action="store_true", help="fail if the committed files differ")
    parser.add_argument("--spec", type=Path, default=SPEC)
    args = parser.parse_args(argv)
    return generate(args.spec, check_only=args.check)


if __name__ == "__main__":
    sys.exit(main())
