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

Cluster note: the script touches the marker, the failure hash (both tagged with
the stream name, so in the stream's slot) and whatever keys the effects name.
On Redis Cluster, effects must use keys in the stream's slot; this stack runs a
single Redis primary, where the script is atomic across any keys.
"""

from __future__ import annotations

from typing import Any

# ARGV layout: stream, group, ttl, failures_key, marker_prefix, markers (1/0), n_events,
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
  if #ids == 500 then
    redis.call('XACK', stream, group, unpack(ids))
    ids = {}
  end
end
if #ids > 0 then
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
    events: list[tuple[str, str, bool, Effects | None]],
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
