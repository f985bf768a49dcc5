"""`python -m chaos.faultproxy`: see `chaos.faultproxy.cli`."""

from __future__ import annotations

import sys

from chaos.faultproxy.cli import main

if __name__ == "__main__":
    sys.exit(main())
