"""`slow_close`: pass data untouched, but delay the close by `delay` ms."""

from __future__ import annotations

from dataclasses import dataclass

from chaos.faultproxy.toxics.base import Stub, Toxic
from chaos.faultproxy.toxics.registry import register


@register
@dataclass
class SlowCloseToxic(Toxic):
    type_name = "slow_close"

    delay: int = 0  # ms

    async def pipe(self, stub: Stub) -> None:
        while (chunk := await stub.read()) is not None:
            stub.forward(chunk)
        await stub.sleep(self.delay / 1000)
        stub.close()
