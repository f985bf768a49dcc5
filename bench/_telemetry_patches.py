"""Kernel changes measured before they are made: `python -m bench._telemetry_patches MODULE`.

Applies the patches named in ASTRA_BENCH_TELEMETRY_PATCHES (comma-separated) to
this process, then runs MODULE as `python -m MODULE` would. bench.telemetry
starts trading and the gateway this way in `--experiment` mode. Each patch is
the smallest in-process stand-in for one change to backbone/ (named in its
docstring); none of them is shipped.
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Callable

PATCHES_ENV = "ASTRA_BENCH_TELEMETRY_PATCHES"


def _log_format_once() -> None:
    """backbone/telemetry/logs.py JsonFormatter.format: format a record once, not once
    per handler (stderr and the file each call the formatter)."""
    import logging

    from backbone.telemetry.logs import JsonFormatter

    original = JsonFormatter.format
    key = "_astra_json"

    def format(self: JsonFormatter, record: logging.LogRecord) -> str:
        cached = record.__dict__.get(key)
        if cached is None:
            cached = original(self, record)
            record.__dict__[key] = cached
        return str(cached)

    JsonFormatter.format = format  # type: ignore[method-assign]
    logs = sys.modules["backbone.telemetry.logs"]
    logs._STANDARD = logs._STANDARD | {key}  # type: ignore[attr-defined]


PATCHES: dict[str, Callable[[], None]] = {
    "log_format_once": _log_format_once,
}


def main() -> None:
    for name in filter(None, os.environ.get(PATCHES_ENV, "").split(",")):
        PATCHES[name]()
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
