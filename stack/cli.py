"""`astra`: the stack launcher and operator tools."""

from __future__ import annotations

import argparse
import asyncio
import sys

from stack.config import StackSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="astra", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run Redis, the services and the gateway until Ctrl-C")
    docs = sub.add_parser("docs", help="regenerate the event catalogue (JSON Schema, AsyncAPI)")
    docs.add_argument("--check", action="store_true", help="fail if the committed docs differ")
    args = parser.parse_args(argv)
    if args.command == "up":
        from stack.up import run_stack

        return asyncio.run(run_stack(StackSettings()))
    if args.command == "docs":
        from stack.catalog_docs import write_catalog_docs

        return write_catalog_docs(check=args.check)
    return 2


if __name__ == "__main__":
    sys.exit(main())
