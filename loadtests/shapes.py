"""Load shapes, each bounded in time: what `--shape` selects.

A shape maps the run's elapsed seconds to (users, spawn rate), or None when the run is
over, as Locust's `LoadTestShape.tick()` does; `locustfile.RunShape` delegates to one.
All are pure functions of (users, seconds), so they are tested without Locust.

    steady  ramp to `users` in the first 10 %, hold to the end
    step    four equal steps: users/4, users/2, 3users/4, users
    spike   a quarter of `users`, a spike to all of them in the middle fifth, back down
    soak    like steady, with a slower ramp; meant for long `--seconds`
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

Tick = tuple[int, float] | None


@dataclass(frozen=True)
class Plan:
    users: int
    seconds: float

    def _spawn(self, target: int, over: float) -> float:
        return max(1.0, target / max(over, 1.0))


def steady(plan: Plan, t: float) -> Tick:
    if t >= plan.seconds:
        return None
    return plan.users, plan._spawn(plan.users, plan.seconds * 0.1)


def step(plan: Plan, t: float) -> Tick:
    if t >= plan.seconds:
        return None
    n = min(4, int(t // (plan.seconds / 4)) + 1)
    return max(1, math.ceil(plan.users * n / 4)), plan._spawn(plan.users, plan.seconds / 8)


def spike(plan: Plan, t: float) -> Tick:
    if t >= plan.seconds:
        return None
    base = max(1, plan.users // 4)
    if 0.4 * plan.seconds <= t < 0.6 * plan.seconds:
        return plan.users, float(max(1, plan.users))  # all at once: that is the spike
    return base, float(max(1, plan.users))


def soak(plan: Plan, t: float) -> Tick:
    if t >= plan.seconds:
        return None
    return plan.users, plan._spawn(plan.users, min(plan.seconds * 0.2, 300.0))


SHAPES: dict[str, Callable[[Plan, float], Tick]] = {
    "steady": steady,
    "step": step,
    "spike": spike,
    "soak": soak,
}
