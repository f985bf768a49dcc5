"""The load generator alone: `Ceiling` users send the traders' market read as fast as
they can (no wait) to a trivial upstream, through the same request code as the
personas (correlation ID, `catch_response`, classification). What one Locust process
reaches here is its ceiling; `loadtests.ceiling` runs it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `locust -f` from anywhere

from locust import constant, task

from loadtests.personas import Persona


class Ceiling(Persona):
    persona = "ceiling"
    wait_time = constant(0)

    @task
    def read_markets(self) -> None:
        self.request("GET", "/api/v1/trading/markets")
