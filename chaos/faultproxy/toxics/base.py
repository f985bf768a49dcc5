"""What a toxic is and what it may do to the data of one link.

A toxic only holds its settings (its attributes) and a `pipe()` coroutine. Per-connection
state lives on the `Stub` it is given, so one toxic serves every connection of a proxy,
as in Toxiproxy's `toxics/toxic.go`:

              toxic.pipe(stub)
                    v
    source -> [ stub inbox ] -> next stub ... -> destination

`pipe()` reads chunks, decides what to emit and when, and ends by closing the stub
(end of stream) or resetting the connection. When the toxic is removed or updated
the task running `pipe()` is cancelled; whatever the stub still holds (`pending`)
is passed on, so removing a toxic never loses data.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self

from chaos.faultproxy.direction import Direction
from chaos.faultproxy.errors import BadRequestBody

_INT64_MAX = 2**63 - 1


@dataclass(slots=True)
class Chunk:
    """Bytes read from a socket, stamped with the loop time they arrived at."""

    data: bytes | memoryview  # toxics that cut chunks pass views, not copies
    timestamp: float


class Stub(Protocol):
    """One toxic's place in one link (Toxiproxy's `ToxicStub`); implemented by the link."""

    rng: random.Random
    state: Any

    def now(self) -> float:
        """The event loop's clock, the same clock as `Chunk.timestamp`."""
        ...

    async def read(self) -> Chunk | None:
        """The next chunk, or None at end of stream; it becomes `pending`."""
        ...

    def emit(self, chunk: Chunk) -> None:
        """Send `chunk` on to the next toxic (or the destination socket)."""
        ...

    def set_pending(self, chunk: Chunk | None) -> None:
        """Declare what of the last read is still held (None: nothing)."""
        ...

    def forward(self, chunk: Chunk) -> None:
        """`emit(chunk)` and hold nothing."""
        ...

    def close(self) -> None:
        """End the stream here: the destination is closed once earlier data is written."""
        ...

    def reset(self) -> None:
        """Abort the whole connection with a TCP RST on both sockets."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def sleep_until(self, deadline: float) -> None: ...


class Toxic:
    """Base of every toxic; attributes are dataclass fields (non-negative integers).

    @register
    @dataclass
    class LatencyToxic(Toxic):
        type_name = "latency"
        latency: int = 0  # ms
        async def pipe(self, stub: Stub) -> None: ...
    """

    type_name: ClassVar[str] = ""

    async def pipe(self, stub: Stub) -> None:
        await pass_through(stub)

    def new_state(self) -> Any:
        """Per-connection state kept across updates of the toxic (Toxiproxy's StatefulToxic)."""
        return None

    def cleanup(self, stub: Stub) -> None:
        """Called when the toxic is removed from a link it was affecting."""

    def attributes(self) -> dict[str, int]:
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_attributes(cls, raw: object, base: Toxic | None = None) -> Self:
        """Build from a JSON `attributes` object; keys not given keep `base`'s (or default) values.

        Unknown keys are ignored, as Go's JSON decoder does; wrong types and negative
        numbers are refused with `BadRequestBody`.
        """
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise BadRequestBody(f"attributes must be an object, got {_json_kind(raw)}")
        values = dict(base.attributes()) if base is not None else {}
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            if field.name in raw:
                values[field.name] = _non_negative_int(cls.type_name, field.name, raw[field.name])
        return cls(**values)


@dataclass(frozen=True)
class ToxicWrapper:
    """A configured toxic: its settings plus Toxiproxy's name, stream and toxicity.

    It lives here, beside `Toxic`, because both the collection that creates it and the
    link that applies it need it; in either of those modules it made them import each other.
    """

    name: str
    type: str
    stream: str  # as the client spelled it; `direction` is the parsed value
    direction: Direction
    toxicity: float  # share of connections affected, 0..1
    toxic: Toxic


async def pass_through(stub: Stub) -> None:
    """Forward everything: the toxic of a connection its toxicity roll spared."""
    while (chunk := await stub.read()) is not None:
        stub.forward(chunk)
    stub.close()


def _non_negative_int(toxic_type: str, name: str, value: object) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequestBody(
            f"cannot unmarshal {_json_kind(value)} into {toxic_type}.attributes.{name} "
            "of type integer"
        )
    if value < 0 or value > _INT64_MAX:
        raise BadRequestBody(f"{toxic_type}.attributes.{name} must be >= 0, got {value}")
    return value


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
