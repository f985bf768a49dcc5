"""Effects this process queued but may not see in Redis yet, so a handler reads its own writes.

The consumer runs every handler of a batch first and commits the batch after, in
one script. A handler that reads Redis therefore misses what the previous event
of the same batch queued: two trades of one user in one batch would both start
from the same XP. So each handler records here what it queued, under the event's
processed-marker; the next handler for that user reads the state and those
markers in one MULTI/EXEC and adds back exactly the entries whose marker is still
absent (queued, not yet committed).

    queued = writes.pending(user_id, event_id)
    state, committed = await store.snapshot(user_id, [q.marker for q in queued])
    live = writes.settle(user_id, queued, committed)    # drops the committed ones
    ...
    writes.add(user_id, Uncommitted(event_id, marker, xp, achievements))

An entry also leaves when its event is delivered again (its batch did not
commit; the redelivery recomputes it and everything queued after it) and after
`max_age` seconds: a commit that has not happened by then never will, and the
reaper or the drain of this consumer's pending entries delivers the event again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Uncommitted:
    event_id: str
    marker: str  # the consumer group's processed-marker key for this event
    xp: int
    achievements: frozenset[str]


class UncommittedWrites:
    """Per user, the effects queued by this process whose commit it has not yet seen."""

    def __init__(self, max_age: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._clock = clock
        self._by_user: dict[str, list[Uncommitted]] = {}
        self._by_age: deque[tuple[float, str, str]] = deque()  # (added at, user_id, event_id)

    def pending(self, user_id: str, event_id: str) -> list[Uncommitted]:
        """What may still be uncommitted for the user, before handling `event_id`."""
        self._expire()
        entries = self._by_user.get(user_id, [])
        for i, entry in enumerate(entries):
            if entry.event_id == event_id:  # delivered again: that batch never committed
                del entries[i:]
                break
        return list(entries)

    def settle(
        self, user_id: str, queued: Sequence[Uncommitted], committed: Sequence[bool]
    ) -> list[Uncommitted]:
        """Forget the entries now committed; return the others (still to add to the state)."""
        done = {q.event_id for q, c in zip(queued, committed, strict=True) if c}
        live = [q for q, c in zip(queued, committed, strict=True) if not c]
        if done:
            self._remove(user_id, done)
        return live

    def add(self, user_id: str, entry: Uncommitted) -> None:
        self._by_user.setdefault(user_id, []).append(entry)
        self._by_age.append((self._clock(), user_id, entry.event_id))

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_user.values())

    def _expire(self) -> None:
        cutoff = self._clock() - self.max_age
        while self._by_age and self._by_age[0][0] < cutoff:
            _, user_id, event_id = self._by_age.popleft()
            self._remove(user_id, {event_id})

    def _remove(self, user_id: str, event_ids: set[str]) -> None:
        entries = self._by_user.get(user_id)
        if entries is None:
            return
        kept = [e for e in entries if e.event_id not in event_ids]
        if kept:
            self._by_user[user_id] = kept
        else:
            del self._by_user[user_id]

    def __repr__(self) -> str:
        return f"<UncommittedWrites users={len(self._by_user)} entries={len(self)}>"
