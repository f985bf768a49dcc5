"""`latency`: hold each chunk until `latency` ± `jitter` ms after it arrived."""

from __future__ import annotations

from dataclasses import dataclass

from chaos.faultproxy.toxics.base import Stub, Toxic
from chaos.faultproxy.toxics.registry import register


@register
@dataclass
class LatencyToxic(Toxic):
    type_name = "latency"

    latency: int = 0  # ms
    jitter: int = 0  # ms, drawn per chunk from [-jitter, jitter)

    def delay(self, stub: Stub) -> float:
        """Seconds to add to one chunk (Toxiproxy: `latency + rand.Int63n(2*jitter) - jitter`)."""
        millis = self.latency
        if self.jitter > 0:
            millis += stub.rng.randrange(-self.jitter, self.jitter)
        return millis / 1000

    async def pipe(self, stub: Stub) -> None:
        # Delays count from arrival, not from the previous chunk's release, so a burst
        # of chunks is delayed once, not once per chunk; order is kept.
        while (chunk := await stub.read()) is not None:
            await stub.sleep_until(chunk.timestamp + self.delay(stub))
            stub.forward(chunk)
        stub.close()
