"""Locust load that returns a verdict: personas, bounded shapes, and an SLO gate.

    python -m loadtests run --shape steady --users 10 --rate 20 --seconds 60

`run` prepares a pool of logged-in accounts, drives Locust headless (`locustfile.py`),
then judges the run by `alerts/slos.yaml` twice, from Locust's statistics (client side)
and from Prometheus (server side), and writes `var/load/<run-id>/` (CSVs, summary.json,
report.html). The exit code is the verdict.
"""

from loadtests.gate import Verdict, judge
from loadtests.routes import slo_class_of

__all__ = ["Verdict", "judge", "slo_class_of"]
