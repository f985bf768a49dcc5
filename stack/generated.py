"""Generated files kept in the repository: written, or checked against a fresh build.

    write_or_check({"a.json": text}, out_dir, check=True, how="make dashboards")

With `check`, nothing is written and the stale names go to stderr with the command that
regenerates them (exit code 1), so `make lint` fails while a committed copy is behind.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path


def write_or_check(files: Mapping[str, str], out: Path, *, check: bool, how: str) -> int:
    stale = []
    for name, text in files.items():
        path = out / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        print(f"out of date (run `{how}`): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0
