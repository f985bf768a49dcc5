"""`bandwidth`: pass data at no more than `rate` KB/s (1 KB = 1000 bytes, as Toxiproxy)."""

from __future__ import annotations

from dataclasses import dataclass

from chaos.faultproxy.toxics.base import Chunk, Stub, Toxic
from chaos.faultproxy.toxics.registry import register


@register
@dataclass
class BandwidthToxic(Toxic):
    type_name = "bandwidth"

    rate: int = 0  # KB/s; 0 = unlimited

    async def pipe(self, stub: Stub) -> None:
        bytes_per_second = self.rate * 1000
        # Like Toxiproxy, large chunks go out in pieces of 100 ms worth of data.
        piece = max(1, self.rate * 100)
        # A virtual clock: when the link may send its next byte. It never lags behind
        # the real clock, so an idle link earns no burst credit.
        free_at = stub.now()
        while (chunk := await stub.read()) is not None:
            if bytes_per_second <= 0:
                stub.forward(chunk)
                continue
            data = memoryview(chunk.data)
            free_at = max(free_at, stub.now())
            while data:
                part, data = data[:piece], data[piece:]
                free_at += len(part) / bytes_per_second
                await stub.sleep_until(free_at)
                stub.emit(Chunk(part, chunk.timestamp))
                stub.set_pending(Chunk(data, chunk.timestamp) if data else None)
        stub.close()
