"""Redis effects a handler buffers, applied atomically with the group's ack.

A handler that keeps its state in Redis does not write directly: it queues
commands on `ctx.effects`, and the consumer applies them in one Lua script that
also sets the group's processed-marker and XACKs the entry. A script runs
atomically, so a consumer killed between handling and ack leaves nothing
half-applied, and a redelivered event whose marker exists is acked without
re-applying anything. Redis cannot roll a script back: if an effect command
itself fails (WRONGTYPE, say), the effects before it stay applied, the event gets
no marker and no ack, and the consumer moves it to the dead-letter stream with
the error — never reported as consumed.

Events the handler publishes (`ctx.publish`) are XADDs in the same script: a
Redis-native outbox for handlers whose state is in Redis.

On one Redis server (or a Sentinel-managed primary) that script is the whole
commit. On a Redis Cluster a script may only touch keys of one slot, and an event's
effects name keys anywhere (a user's XP, the leaderboard, another stream), so the one
atomic step becomes two (`split_by_slot`):
  1. per slot its effects touch, the same script without an ack: that slot's share of
     each event's effects, guarded by a marker *in that slot* (`keys.applied_marker`);
  2. in the stream's slot, the script with no effects: stream marker, failure count,
     XACK.
A consumer killed between the two leaves the entry pending with some or all of its
effects applied; its redelivery finds each slot's marker and re-applies nothing,
then acks. What is lost is atomicity across slots, not exactly-once effects: for a
moment a reader can see an event's XP but not yet its leaderboard score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.crc import key_slot

# ARGV layout: stream ('' = apply effects and markers, no ack), group, ttl,
#   failures_key, marker_prefix, markers (1/0), n_events,
#   then per event: event_id, entry_id, meta (= 2 * n_cmds + had_failures), then per
#   command: n_args, args...
# The marker key is marker_prefix .. event_id: every argument the script need not
# receive per event is time the client spends packing and the server parsing.
# markers = 0 (BusSettings.idempotency_markers off, a chaos drill's "without defence"):
# no marker is read or written, so every delivery applies its effects.
COMMIT_SCRIPT = """
local stream, group, ttl, fkey, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local markers = ARGV[6] == '1'
local n = tonumber(ARGV[7])
local i = 8
local results = {}
local ids = {}
for e = 1, n do
  local event_id, entry_id = ARGV[i], ARGV[i + 1]
  local meta = tonumber(ARGV[i + 2])
  local ncmds = math.floor(meta / 2)
  i = i + 3
  local marker = prefix .. event_id
  local fresh = (not markers) or redis.call('EXISTS', marker) == 0
  local err = nil
  for c = 1, ncmds do
    local nargs = tonumber(ARGV[i])
    if fresh and err == nil then
      local reply = redis.pcall(unpack(ARGV, i + 1, i + nargs))
      if type(reply) == 'table' and reply.err then
        err = reply.err
      end
    end
    i = i + 1 + nargs
  end
  if err then
    -- No marker, no ack: the consumer dead-letters the entry with this error.
    results[#results + 1] = 'effect failed: ' .. err
  else
    if fresh and markers then
      redis.call('SET', marker, '1', 'EX', ttl)
    end
    if meta % 2 == 1 then
      redis.call('HDEL', fkey, entry_id)
    end
    ids[#ids + 1] = entry_id
    results[#results + 1] = fresh and 1 or 0
  end
  if #ids == 500 and stream ~= '' then
    redis.call('XACK', stream, group, unpack(ids))
    ids = {}
  end
end
if #ids > 0 and stream ~= '' then
  redis.call('XACK', stream, group, unpack(ids))
end
return results
"""


class Effects:
    """Commands buffered by one handler invocation (applied only if it succeeds).

    async def on_trade(event, ctx):
        ctx.effects.call("HINCRBY", f"xp:{event.data.user_id}", "xp", 10)
        ctx.effects.call("ZINCRBY", "leaderboard", 10, event.data.user_id)
    """

    __slots__ = ("commands",)

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []

    def call(self, *args: str | bytes | int | float) -> None:
        """Queue one command. Arguments are checked here, inside the handler, so a
        bad one fails the handler (retry, then DLQ) instead of the batch's commit."""
        if not args:
            raise ValueError("a command needs a name")
        for arg in args:
            if isinstance(arg, bool) or not isinstance(arg, str | bytes | int | float):
                raise TypeError(f"effect arguments are str, bytes, int or float, not {arg!r}")
        self.commands.append(args)

    def __len__(self) -> int:
        return len(self.commands)


def commit_args(
    stream: str,
    group: str,
    ttl_seconds: int,
    failures_key: str,
    marker_prefix: str,
    events: Sequence[tuple[str, str, bool, Effects | None]],
    *,
    markers: bool = True,
) -> list[Any]:
    """Flatten `(event_id, entry_id, had_failures, effects)` per event into the script's ARGV.

    `markers=False` applies every event's effects, duplicates included (defence off).
    """
    args: list[Any] = [
        stream,
        group,
        ttl_seconds,
        failures_key,
        marker_prefix,
        1 if markers else 0,
        len(events),
    ]
    for event_id, entry_id, had_failures, effects in events:
        commands = effects.commands if effects is not None else ()
        args += (event_id, entry_id, 2 * len(commands) + had_failures)
        for command in commands:
            args.append(len(command))
            args.extend(command)
    return args


def split_by_slot(effects: Effects, default_slot: int) -> dict[int, Effects]:
    """One event's effects grouped by the cluster slot of each command's key (its
    second word; a command with none goes to `default_slot`, the stream's), each
    group in the handler's order."""
    parts: dict[int, Effects] = {}
    for command in effects.commands:
        key = command[1] if len(command) > 1 else None
        slot = key_slot(_as_bytes(key)) if key is not None else default_slot
        part = parts.get(slot)
        if part is None:
            part = parts[slot] = Effects()
        part.commands.append(command)
    return parts


def _as_bytes(key: str | bytes | int | float) -> bytes:
    return key if isinstance(key, bytes) else str(key).encode()
