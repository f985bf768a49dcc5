"""`slicer`: cut each chunk into ~`average_size` byte pieces, `delay` µs apart."""

from __future__ import annotations

import random
from dataclasses import dataclass

from chaos.faultproxy.toxics.base import Chunk, Stub, Toxic
from chaos.faultproxy.toxics.registry import register


@register
@dataclass
class SlicerToxic(Toxic):
    type_name = "slicer"

    average_size: int = 0  # bytes
    size_variation: int = 0  # bytes, should be below average_size
    delay: int = 0  # µs between pieces

    def bounds(self, size: int, rng: random.Random) -> list[tuple[int, int]]:
        """Piece boundaries for `size` bytes: halve until a piece is near the average.

        Toxiproxy's recursive split, iterative here; the variation shifts each
        midpoint by [-size_variation, size_variation).
        """
        average = max(1, self.average_size)
        variation = self.size_variation
        pieces: list[tuple[int, int]] = []
        todo = [(0, size)]
        while todo:
            start, end = todo.pop()
            if (end - start) - average <= variation or end - start < 2:
                pieces.append((start, end))
                continue
            mid = start + (end - start) // 2
            if variation > 0:
                mid += rng.randrange(-variation, variation)
            mid = min(max(mid, start + 1), end - 1)
            todo.append((mid, end))
            todo.append((start, mid))
        return pieces

    async def pipe(self, stub: Stub) -> None:
        while (chunk := await stub.read()) is not None:
            data = memoryview(chunk.data)
            for start, end in self.bounds(len(data), stub.rng):
                stub.emit(Chunk(data[start:end], chunk.timestamp))
                rest = data[end:]
                stub.set_pending(Chunk(rest, chunk.timestamp) if rest else None)
                if self.delay:
                    await stub.sleep(self.delay / 1_000_000)
        stub.close()
