"""`timeout`: let nothing through and close after `timeout` ms (0: hold until removed)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from chaos.faultproxy.toxics.base import Stub, Toxic
from chaos.faultproxy.toxics.registry import register


@register
@dataclass
class TimeoutToxic(Toxic):
    type_name = "timeout"

    timeout: int = 0  # ms; 0 = never close, drop data until the toxic is removed

    async def pipe(self, stub: Stub) -> None:
        deadline = stub.now() + self.timeout / 1000 if self.timeout > 0 else None
        try:
            async with asyncio.timeout_at(deadline):
                while await stub.read() is not None:
                    stub.set_pending(None)  # dropped on the floor
        except TimeoutError:
            pass
        stub.close()

    def cleanup(self, stub: Stub) -> None:
        # Data was dropped, so the stream is corrupt: close rather than resume
        # (Toxiproxy's TimeoutToxic.Cleanup does the same).
        stub.close()
