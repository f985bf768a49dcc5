"""The image's HEALTHCHECK: `python3 -m stack.containers.health [role]`.

Asks the container's own process what a client would (its readiness endpoint, on the
port its role serves), exit 0 when it answers 2xx, 1 otherwise with the reason on
stderr (Docker shows it in `docker inspect`). The role comes from the command the
container was started with (PID 1's argv under tini, or ours), or the first argument.
A role that serves nothing (the load generator) is healthy while it runs.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from stack.containers.roles import ROLES, Role

TIMEOUT_SECONDS = 2.0


def _started_role() -> Role | None:
    """The role of the entrypoint that runs in this container (any process's argv)."""
    for cmdline in sorted(Path("/proc").glob("[0-9]*/cmdline")):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in argv if w]
        for i, word in enumerate(words[:-1]):
            if word == "stack.containers.run" and words[i + 1] in ROLES:
                return ROLES[words[i + 1]]
            if word == "-m" and words[i + 1] in {r.module for r in ROLES.values()}:
                return next(r for r in ROLES.values() if r.module == words[i + 1])
    return None


def check(role: Role) -> str | None:
    """None when healthy, else why not."""
    if role.port is None:
        return None
    port = os.environ.get("ASTRA_GATEWAY_PORT" if role.name == "gateway" else "ASTRA_PORT")
    url = f"http://127.0.0.1:{port or role.port}{role.health_path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return None if 200 <= response.status < 300 else f"{url}: {response.status}"
    except urllib.error.HTTPError as e:
        return f"{url}: {e.code} {e.read(300).decode(errors='replace')}"
    except (OSError, urllib.error.URLError) as e:
        return f"{url}: {e}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    role = ROLES.get(args[0]) if args else _started_role()
    if role is None:
        print("no role to check (run <role> not found among the processes)", file=sys.stderr)
        return 1
    why = check(role)
    if why is not None:
        print(why, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
