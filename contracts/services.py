"""The names of the domain services: the one list the gateway, the stack and the tests read.

It sits in `contracts` because every outer package may import it and `backbone`, which
must not know the services, never does.
"""

from __future__ import annotations

# Start (dependency) order: users signs the tokens every other service verifies;
# trading produces the events gamification consumes; nft consumes gamification's
# achievements; social consumes them all. `astra up` starts them in this order.
SERVICES: tuple[str, ...] = ("users", "trading", "gamification", "nft", "social")

__all__ = ["SERVICES"]
