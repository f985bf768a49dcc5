"""`limit_data`: pass the first `bytes` bytes of the connection, then close it."""

from __future__ import annotations

from dataclasses import dataclass

from chaos.faultproxy.toxics.base import Chunk, Stub, Toxic
from chaos.faultproxy.toxics.registry import register


@dataclass
class LimitDataState:
    transmitted: int = 0  # bytes, kept when the toxic is updated


@register
@dataclass
class LimitDataToxic(Toxic):
    type_name = "limit_data"

    bytes: int = 0  # bytes

    def new_state(self) -> LimitDataState:
        return LimitDataState()

    async def pipe(self, stub: Stub) -> None:
        state: LimitDataState = stub.state
        while (chunk := await stub.read()) is not None:
            allowed = max(0, self.bytes - state.transmitted)
            data = chunk.data[:allowed]
            if data:
                stub.emit(Chunk(data, chunk.timestamp))
                state.transmitted += len(data)
            stub.set_pending(None)
            if state.transmitted >= self.bytes:
                break
        stub.close()
