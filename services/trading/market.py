"""The simulated market: a seeded random walk per symbol, a pure function of time.

    market = Market(seed=42, tick_ms=1000, epoch=datetime(2026, 1, 1, tzinfo=UTC))
    market.quote("AAPL")          # Decimal("191.37"): the price at the current tick
    market.price("AAPL", tick=7)  # the same on every instance, every run, for seed 42

Time is cut into ticks of `tick_ms` since `epoch`; the price moves one step per
tick: log(price) is a Gaussian random walk (volatility per instrument, scaled
to the tick length). `tick_ms=0` freezes the market at its opening prices, which
makes fills exactly predictable in tests.

Because a price depends only on (seed, symbol, tick), instances never need to
share state to agree on it, and no walk has to be replayed from tick 0: the walk
is built top-down as nested Brownian bridges (Levy's construction). A span of
64**8 ticks is split into 64 parts whose endpoints come from a seeded bridge,
the part holding the tick is split again, and so on down to single ticks: eight
levels of 64 draws, each from an RNG seeded by (seed, symbol, level, start).
The values at integer ticks have exactly the distribution of a random walk with
unit-variance steps. The last level is cached, so a quote costs a list lookup
for the next 63 ticks.

Prices are Decimal with two places, never below 0.01 (the log-walk never reaches
zero; rounding might).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

CENT = Decimal("0.01")
MIN_PRICE = CENT
MAX_PRICE = Decimal("1000000.00")  # keeps price x max quantity within the columns
_BRANCH = 64
_SPAN = _BRANCH**8  # ticks the walk covers: 2**48 (8900 years of 1 ms ticks)
_MS_PER_YEAR = 365 * 24 * 3_600_000


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    name: str
    opening_price: Decimal  # the price at tick 0
    annual_volatility: float  # standard deviation of log(price) over 365 days


INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("AAPL", "Apple Inc.", Decimal("190.00"), 0.25),
    Instrument("AMZN", "Amazon.com Inc.", Decimal("180.00"), 0.30),
    Instrument("GOOGL", "Alphabet Inc.", Decimal("170.00"), 0.28),
    Instrument("MSFT", "Microsoft Corp.", Decimal("420.00"), 0.22),
    Instrument("NVDA", "NVIDIA Corp.", Decimal("120.00"), 0.50),
    Instrument("TSLA", "Tesla Inc.", Decimal("250.00"), 0.60),
)
SYMBOLS: frozenset[str] = frozenset(i.symbol for i in INSTRUMENTS)


class Market:
    def __init__(
        self,
        seed: int,
        *,
        tick_ms: int,
        epoch: datetime,
        instruments: Iterable[Instrument] = INSTRUMENTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if tick_ms < 0:
            raise ValueError("tick_ms must be >= 0")
        if epoch.tzinfo is None:
            raise ValueError("epoch must be timezone-aware")
        self.seed = seed
        self.tick_ms = tick_ms
        self.epoch = epoch
        self.instruments = {i.symbol: i for i in instruments}
        self._clock = clock
        self._epoch_ms = epoch.timestamp() * 1000
        # Per-tick volatility, so the market's character does not depend on tick_ms.
        self._sigma = {
            s: i.annual_volatility * math.sqrt(max(tick_ms, 1) / _MS_PER_YEAR)
            for s, i in self.instruments.items()
        }
        self._leaf: dict[str, tuple[int, list[float]]] = {}

    @property
    def symbols(self) -> list[str]:
        return sorted(self.instruments)

    def tick(self) -> int:
        """The current tick: 0 at the epoch (and forever when the market is frozen)."""
        if self.tick_ms == 0:
            return 0
        elapsed = self._clock() * 1000 - self._epoch_ms
        return min(max(0, int(elapsed // self.tick_ms)), _SPAN - 1)

    def quote(self, symbol: str) -> Decimal:
        return self.price(symbol, self.tick())

    def quotes(self) -> dict[str, Decimal]:
        tick = self.tick()  # one tick for all symbols: a consistent snapshot
        return {symbol: self.price(symbol, tick) for symbol in self.symbols}

    def price(self, symbol: str, tick: int) -> Decimal:
        instrument = self.instruments[symbol]  # KeyError: unknown symbol
        if not 0 <= tick < _SPAN:
            raise ValueError(f"tick {tick} outside the walk")
        exponent = max(-700.0, min(700.0, self._sigma[symbol] * self._walk(symbol, tick)))
        raw = Decimal(repr(float(instrument.opening_price) * math.exp(exponent)))
        return min(max(raw.quantize(CENT, ROUND_HALF_EVEN), MIN_PRICE), MAX_PRICE)

    def _walk(self, symbol: str, tick: int) -> float:
        """The unit-step random walk at `tick` (0 at tick 0), top-down through the bridges."""
        leaf = self._leaf.get(symbol)
        if leaf is not None and leaf[0] <= tick < leaf[0] + _BRANCH:
            return leaf[1][tick - leaf[0]]
        start, length = 0, _SPAN
        low = 0.0
        high = math.sqrt(_SPAN) * random.Random(f"{self.seed}:{symbol}:top").gauss(0.0, 1.0)
        while True:
            points = self._bridge(symbol, start, length, low, high)
            step = length // _BRANCH
            j = (tick - start) // step
            if step == 1:
                self._leaf[symbol] = (start, points)
                return points[j]
            start, length, low, high = start + j * step, step, points[j], points[j + 1]

    def _bridge(self, symbol: str, start: int, length: int, low: float, high: float) -> list[float]:
        """_BRANCH + 1 points of a random walk from `low` to `high` over `length` ticks."""
        rng = random.Random(f"{self.seed}:{symbol}:{length}:{start}")
        sd = math.sqrt(length / _BRANCH)
        walk = [0.0]
        for _ in range(_BRANCH):
            walk.append(walk[-1] + sd * rng.gauss(0.0, 1.0))
        drift = (high - low) - walk[-1]
        return [low + w + drift * (i / _BRANCH) for i, w in enumerate(walk)]

    def __repr__(self) -> str:
        return f"<Market seed={self.seed} tick_ms={self.tick_ms} symbols={len(self.instruments)}>"
