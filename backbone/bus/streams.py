"""Stream names, retention and event-type declarations.

A stream is `astra.{domain}.{event}.v{version}`; an event type binds one stream
to the pydantic model of its `data`. Names are checked when the event type is
declared (import time), so a typo fails a test run, not a production publish.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from backbone import keys
from backbone.config import BusSettings
from backbone.errors import RetentionError, StreamNameError

_SNAKE = r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*"
_STREAM_RE = re.compile(rf"^astra\.({_SNAKE})\.({_SNAKE})\.v([1-9][0-9]*)$")
_PART_RE = re.compile(rf"^{_SNAKE}$")
# A producer is a service name as it appears in the envelope (and in registry keys).
_PRODUCER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")

D = TypeVar("D", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class StreamName:
    domain: str
    event: str
    version: int

    def __post_init__(self) -> None:
        for what, part in (("domain", self.domain), ("event", self.event)):
            if not _PART_RE.match(part):
                raise StreamNameError(f"{what} {part!r} must be snake_case ([a-z][a-z0-9_]*)")
        if not isinstance(self.version, int) or self.version < 1:
            raise StreamNameError(f"version must be an integer >= 1, got {self.version!r}")

    @classmethod
    def parse(cls, name: str) -> StreamName:
        match = _STREAM_RE.match(name)
        if match is None:
            raise StreamNameError(
                f"{name!r} is not a stream name of the form astra.{{domain}}.{{event}}.v{{version}}"
            )
        return cls(match.group(1), match.group(2), int(match.group(3)))

    def __str__(self) -> str:
        return keys.stream_name(self.domain, self.event, self.version)

    @property
    def dead_letter(self) -> str:
        return keys.dead_letter_stream(str(self))


@dataclass(frozen=True, slots=True)
class LagBudget:
    """How far behind the slowest consumer group is allowed to fall.

    Retention shorter than this budget could trim entries before a slow group
    reads them, so `Retention.check` refuses it.
    """

    min_events: int = 10_000
    min_seconds: float = 3600.0


@dataclass(frozen=True, slots=True)
class Retention:
    """Approximate trimming applied on every XADD (`~` lets Redis trim whole nodes).

    Exactly one of `maxlen` (entries kept) or `max_age_seconds` (MINID = now - age).
    """

    maxlen: int | None = 100_000
    max_age_seconds: float | None = None

    def __post_init__(self) -> None:
        if (self.maxlen is None) == (self.max_age_seconds is None):
            raise RetentionError("retention takes exactly one of maxlen or max_age_seconds")
        if self.maxlen is not None and self.maxlen < 1:
            raise RetentionError("maxlen must be >= 1")
        if self.max_age_seconds is not None and self.max_age_seconds <= 0:
            raise RetentionError("max_age_seconds must be > 0")

    def check(self, budget: LagBudget, stream: str = "") -> Retention:
        if self.maxlen is not None and self.maxlen < budget.min_events:
            raise RetentionError(
                f"{stream or 'stream'}: maxlen {self.maxlen} is below the lag budget of "
                f"{budget.min_events} events; a slow group could lose unread events"
            )
        if self.max_age_seconds is not None and self.max_age_seconds < budget.min_seconds:
            raise RetentionError(
                f"{stream or 'stream'}: max_age {self.max_age_seconds}s is below the lag budget "
                f"of {budget.min_seconds}s; a slow group could lose unread events"
            )
        return self

    def xadd_kwargs(self, now: float | None = None) -> dict[str, Any]:
        if self.maxlen is not None:
            return {"maxlen": self.maxlen, "approximate": True}
        assert self.max_age_seconds is not None
        cutoff_ms = int(((now if now is not None else time.time()) - self.max_age_seconds) * 1000)
        return {"minid": f"{max(cutoff_ms, 0)}-0", "approximate": True}


@dataclass(frozen=True, slots=True)
class EventType(Generic[D]):
    """One versioned event: its stream, the model of its `data`, and who may publish it.

    TradeExecuted = EventType("trading", "trade_executed", 1, TradeExecutedData)
    await publisher.publish(TradeExecuted, TradeExecutedData(...))

    `producers` are the envelope `producer` values consumers accept on this stream
    (default: the stream's domain, i.e. the service that owns it). Anyone able to
    XADD could otherwise forge another service's facts; a consumer dead-letters an
    envelope from an undeclared producer (`unknown_producer`) before any handler
    sees it, and `encode` refuses to write one, so a misconfigured producer fails
    where it publishes rather than at every consumer.
    """

    domain: str
    name: str
    version: int
    model: type[D]
    description: str = ""
    producers: tuple[str, ...] = ()
    stream: StreamName = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stream", StreamName(self.domain, self.name, self.version))
        producers = tuple(self.producers) or (self.domain,)
        for producer in producers:
            if not isinstance(producer, str) or not _PRODUCER_RE.match(producer):
                raise StreamNameError(
                    f"{self.stream}: producer {producer!r} must be a service name "
                    "([A-Za-z0-9][A-Za-z0-9_.-]*, at most 128 characters)"
                )
        object.__setattr__(self, "producers", tuple(dict.fromkeys(producers)))

    def allows(self, producer: str) -> bool:
        """Whether an envelope from `producer` may be applied from this stream."""
        return producer in self.producers

    @property
    def type(self) -> str:
        """The envelope's `type` field: `{domain}.{event}` (the version travels apart)."""
        return f"{self.domain}.{self.name}"

    @property
    def stream_key(self) -> str:
        return str(self.stream)

    def __repr__(self) -> str:
        return f"<EventType {self.stream_key} data={self.model.__name__}>"


class EventCatalog:
    """The event types a process knows; consumers decode through it."""

    def __init__(self, *event_types: EventType[Any]) -> None:
        self._by_stream: dict[str, EventType[Any]] = {}
        for et in event_types:
            self.add(et)

    def add(self, event_type: EventType[Any]) -> EventType[Any]:
        existing = self._by_stream.get(event_type.stream_key)
        if existing is not None and existing is not event_type:
            raise StreamNameError(f"{event_type.stream_key} is declared twice")
        self._by_stream[event_type.stream_key] = event_type
        return event_type

    def for_stream(self, stream: str) -> EventType[Any] | None:
        return self._by_stream.get(stream)

    def lookup(self, type_: str, version: int) -> EventType[Any] | None:
        domain, _, name = type_.partition(".")
        try:
            return self._by_stream.get(keys.stream_name(domain, name, version))
        except (TypeError, ValueError):
            return None

    def __iter__(self) -> Iterator[EventType[Any]]:
        return iter(sorted(self._by_stream.values(), key=lambda et: et.stream_key))

    def __len__(self) -> int:
        return len(self._by_stream)


def retention_for(settings: BusSettings, stream: str) -> Retention:
    """The stream's configured retention (or the default), checked against the lag budget."""
    chosen = settings.retention.get(stream, settings.default_retention)
    budget = LagBudget(settings.lag_budget_events, settings.lag_budget_seconds)
    return Retention(chosen.maxlen, chosen.max_age_seconds).check(budget, stream)
