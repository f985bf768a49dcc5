"""`--mix orders`: traders who only place orders (`Placer`), with the shape, timeline
and statistics hooks of loadtests/locustfile.py (imported from it). A file of its own
because Locust runs every user class a locustfile holds when none is named: the
default mix of `locust -f loadtests/locustfile.py` stays the three personas."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `locust -f` from anywhere

from loadtests.locustfile import RunShape
from loadtests.personas import Placer

__all__ = ["Placer", "RunShape"]
