"""`reset_peer`: on the first data (or close), wait `timeout` ms, then reset with TCP RST."""

from __future__ import annotations

from dataclasses import dataclass

from chaos.faultproxy.toxics.base import Stub, Toxic
from chaos.faultproxy.toxics.registry import register


@register
@dataclass
class ResetPeerToxic(Toxic):
    type_name = "reset_peer"

    timeout: int = 0  # ms

    async def pipe(self, stub: Stub) -> None:
        # As Toxiproxy's ResetToxic: the trigger is the first input; it and anything
        # arriving during the timeout is discarded.
        await stub.read()
        stub.set_pending(None)
        await stub.sleep(self.timeout / 1000)
        stub.reset()
