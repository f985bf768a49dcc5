"""One direction of one proxied connection (Toxiproxy's `link.go`).

    source socket -> feed() -> [stage 0] -> [stage 1] -> ... -> sink -> destination socket
                                   ^ one stage per toxic, each a task running toxic.pipe()

With no toxics `feed` writes straight into the destination transport: the fast path,
one method call per chunk. Toxics added while the connection is open get a new stage
at the end of the chain; a removed stage passes on whatever it still held, so data is
neither lost nor reordered. End of stream (None) travels the chain like data; when it
reaches the sink the destination is closed once everything before it is written.

Flow control: the source is paused while the destination's buffer is full or the
stages hold more than HIGH_WATER bytes, and resumed below LOW_WATER.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from chaos.faultproxy.direction import Direction
from chaos.faultproxy.metrics import ProxyStats
from chaos.faultproxy.toxics.base import Chunk, ToxicWrapper, pass_through

HIGH_WATER = 1 << 20  # bytes held by stages and sink before the source is paused
LOW_WATER = 1 << 18  # bytes below which a paused source resumes

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class Link:
    """Moves bytes from `source` to `dest` through the toxics of one direction.

    link = Link(Direction.DOWNSTREAM, upstream_transport, client_transport,
                stats=stats, rng=rng, logger=log, spawn=proxy.spawn, on_reset=conn.reset)
    upstream_protocol.data_received = link.feed      # in effect
    """

    def __init__(
        self,
        direction: Direction,
        source: asyncio.Transport,
        dest: asyncio.Transport,
        *,
        stats: ProxyStats,
        rng: random.Random,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        spawn: Spawn,
        on_reset: Callable[[], None],
    ) -> None:
        self.direction = direction
        self._dir = int(direction)
        self.rng = rng
        self.logger = logger
        self._source = source
        self._dest = dest
        self._write = dest.write
        self._received = stats.received
        self._sent = stats.sent
        self._spawn = spawn
        self._on_reset = on_reset
        self._loop = asyncio.get_running_loop()
        self._stages: list[_Stage] = []
        self._sink: deque[bytes | memoryview] = deque()
        self._sink_bytes = 0
        self._dest_paused = False
        self._source_paused = False
        self._eof_fed = False
        self._eof_at_sink = False
        self._finished = False
        self._direct = True  # no stages, nothing queued, destination writable

    def __repr__(self) -> str:
        toxics = ",".join(stage.name for stage in self._stages) or "-"
        return f"<Link {self.direction} toxics={toxics} finished={self._finished}>"

    @property
    def finished(self) -> bool:
        return self._finished

    # -- data in ---------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes read from the source socket."""
        size = len(data)
        self._received[self._dir] += size
        if self._direct:
            self._write(data)
            self._sent[self._dir] += size
            return
        if self._finished:
            return
        if self._stages:
            self._stages[0].push(Chunk(data, self._loop.time()))
            self._update_source()
        else:
            self._sink_push(data)

    def feed_eof(self) -> None:
        """The source socket reached end of stream (or went away)."""
        if self._eof_fed or self._finished:
            return
        self._eof_fed = True
        self._deliver_at(0, None)

    # -- toxics ------------------------------------------------------------------

    def add_toxic(self, wrapper: ToxicWrapper) -> None:
        if self._finished:
            return
        stage = _Stage(self, wrapper)
        self._stages.append(stage)
        self._direct = False
        stage.start()

    def update_toxic(self, wrapper: ToxicWrapper) -> None:
        stage = self._find(wrapper.name)
        if stage is not None:
            stage.restart(wrapper)

    def remove_toxic(self, name: str) -> None:
        stage = self._find(name)
        if stage is None:
            return
        if stage.active:
            stage.toxic.cleanup(stage)  # may end the stream, and with it this link
        stage.cancel()
        if stage not in self._stages:
            return
        leftovers = stage.leftovers()
        index = self._stages.index(stage)
        del self._stages[index]
        for item in leftovers:
            self._deliver_at(index, item)
        self._chain_changed()

    def _find(self, name: str) -> _Stage | None:
        for stage in self._stages:
            if stage.name == name:
                return stage
        return None

    # -- between stages ------------------------------------------------------------

    def deliver_after(self, stage: _Stage, item: Chunk | None) -> None:
        try:
            index = self._stages.index(stage) + 1
        except ValueError:
            return  # the stage was removed; it has passed on what it held
        self._deliver_at(index, item)

    def _deliver_at(self, index: int, item: Chunk | None) -> None:
        if index < len(self._stages):
            self._stages[index].push(item)
            self._update_source()
        elif item is None:
            self._sink_eof()
        else:
            self._sink_push(item.data)

    def stage_drained(self) -> None:
        if self._source_paused:
            self._update_source()

    # -- data out ------------------------------------------------------------------

    def _sink_push(self, data: bytes | memoryview) -> None:
        if self._finished:
            return
        if self._dest_paused or self._sink:
            self._sink.append(data)
            self._sink_bytes += len(data)
            self._update_source()
        else:
            self._write(data)
            self._sent[self._dir] += len(data)

    def _sink_eof(self) -> None:
        self._eof_at_sink = True
        if not self._sink:
            self._finish()

    def pause_writing(self) -> None:
        """The destination transport's buffer is over its high-water mark."""
        self._dest_paused = True
        self._direct = False
        self._update_source()

    def resume_writing(self) -> None:
        self._dest_paused = False
        sink = self._sink
        while sink and not self._dest_paused and not self._finished:
            data = sink.popleft()
            self._sink_bytes -= len(data)
            self._write(data)  # may call pause_writing() synchronously
            self._sent[self._dir] += len(data)
        if self._eof_at_sink and not sink:
            self._finish()
            return
        self._chain_changed()

    # -- ends ------------------------------------------------------------------------

    def reset(self) -> None:
        """A toxic asked for a TCP reset: the connection aborts both sockets."""
        if self._finished:
            return
        self.shutdown()
        self._on_reset()

    def dest_lost(self) -> None:
        """The destination socket is gone; nothing more can be written."""
        self.shutdown()

    def shutdown(self) -> None:
        """Stop every stage and drop what is queued (connection teardown)."""
        self._finished = True
        self._direct = False
        for stage in self._stages:
            stage.cancel()
        self._stages.clear()
        self._sink.clear()
        self._sink_bytes = 0

    def _finish(self) -> None:
        self.shutdown()
        if not self._dest.is_closing():
            self._dest.close()  # flushes what is buffered, then FIN

    def _chain_changed(self) -> None:
        self._direct = (
            not self._stages and not self._sink and not self._dest_paused and not self._finished
        )
        self._update_source()

    def _update_source(self) -> None:
        buffered = self._sink_bytes
        for stage in self._stages:
            buffered += stage.inbox_bytes
        if self._source_paused:
            if not self._dest_paused and buffered <= LOW_WATER:
                self._source_paused = False
                if not self._source.is_closing():
                    self._source.resume_reading()
        elif self._dest_paused or buffered > HIGH_WATER:
            self._source_paused = True
            if not self._source.is_closing():
                self._source.pause_reading()


class _Stage:
    """One toxic in one link: Toxiproxy's ToxicStub, and the `Stub` toxics see."""

    def __init__(self, link: Link, wrapper: ToxicWrapper) -> None:
        self.link = link
        self.name = wrapper.name
        self.toxic = wrapper.toxic
        self.rng = link.rng
        self.state = wrapper.toxic.new_state()
        self.inbox: deque[Chunk | None] = deque()
        self.inbox_bytes = 0
        self.pending: Chunk | None = None  # read but not yet passed on
        self.eof_taken = False
        self.closed = False
        # Toxicity decides per connection whether this toxic applies; a seeded rng
        # makes the choice reproducible.
        self.active = self.rng.random() < wrapper.toxicity
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = self.link._spawn(self._run())

    async def _run(self) -> None:
        try:
            if self.active:
                await self.toxic.pipe(self)
            else:
                await pass_through(self)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.link.logger.exception(
                "toxic failed; closing the stream", extra={"toxic": self.name}
            )
        if not self.closed:
            self.close()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def restart(self, wrapper: ToxicWrapper) -> None:
        """Run the updated toxic; what the old one held is read again, first."""
        if self.closed:
            return
        self.cancel()
        if self.pending is not None:
            self.inbox.appendleft(self.pending)
            self.inbox_bytes += len(self.pending.data)
            self.pending = None
        if self.eof_taken:
            self.inbox.append(None)
            self.eof_taken = False
        self.toxic = wrapper.toxic
        self.active = self.rng.random() < wrapper.toxicity
        self.start()

    def leftovers(self) -> list[Chunk | None]:
        if self.closed:
            return []
        items: list[Chunk | None] = []
        if self.pending is not None:
            items.append(self.pending)
        items.extend(self.inbox)
        if self.eof_taken:
            items.append(None)
        return items

    def push(self, item: Chunk | None) -> None:
        if self.closed:
            return
        self.inbox.append(item)
        if item is not None:
            self.inbox_bytes += len(item.data)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the Stub interface --------------------------------------------------------

    def now(self) -> float:
        return self.link._loop.time()

    async def read(self) -> Chunk | None:
        while not self.inbox:
            self._waiter = waiter = self.link._loop.create_future()
            try:
                await waiter
            finally:
                if self._waiter is waiter:  # a restarted stage may have a new reader
                    self._waiter = None
        item = self.inbox.popleft()
        if item is None:
            self.eof_taken = True
        else:
            self.inbox_bytes -= len(item.data)
            self.link.stage_drained()
        self.pending = item
        return item

    def emit(self, chunk: Chunk) -> None:
        if not self.closed:
            self.link.deliver_after(self, chunk)

    def set_pending(self, chunk: Chunk | None) -> None:
        self.pending = chunk

    def forward(self, chunk: Chunk) -> None:
        self.pending = None
        self.emit(chunk)

    def close(self) -> None:
        if self.closed:
            return
        self.pending = None
        self.link.deliver_after(self, None)
        self.closed = True

    def reset(self) -> None:
        self.closed = True
        self.pending = None
        self.link.reset()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - self.link._loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
