"""Redis users with least privilege: who may run which commands on which keys.

`astra up` writes `acl_file()` (0600) and starts Redis with `--aclfile`, the
`default` user off, so a process that knows no password can do nothing, and
every process connects as its own user:

    users, trading, gamification, nft, social, gateway   one per deployable
    observe                                              registry reader (Prometheus http_sd)
    exporter                                             the Redis exporter: read-only
    operator                                             a human with redis-cli: read-only

A service's *root* permissions cover its own keys (its data, the registry
records of its own service, the idempotency markers and failure counts of its
own consumer groups). Streams are reached only through *selectors* (Redis 7),
each a command set bound to a key pattern, so publishing and consuming are
different rights on the same stream: a producer may `XADD` to the streams it
publishes and nothing else there; a consumer may `XREADGROUP`/`XACK`/
`XAUTOCLAIM` the streams it consumes but never `XADD` to them. ACL rules apply
to every command a Lua script runs too, so the commit script is held to the
same rules. No user may run FLUSHALL, CONFIG, KEYS, DEBUG, SCRIPT FLUSH, ACL,
SHUTDOWN, MODULE or any other `@dangerous` command.

Redis ACL patterns cannot express "only this member of a sorted set" or "only
this consumer group", so two rights stay wider than ideal and are documented
in docs/security.md: every service may add members to the shared registry
services set, and a consumer could read a stream through another group name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from backbone import keys
from backbone.bus.streams import EventType
from contracts.gamification import AchievementUnlocked, LevelUp, XpGained
from contracts.gateway import ActionAudited
from contracts.nft import NftMinted
from contracts.trading import PositionUpdated, TradeExecuted
from contracts.users import UserLoggedIn, UserRegistered

# Commands any client needs to connect and identify itself. (Redis 7.2+ clients also
# send CLIENT SETINFO, a command 7.0 lacks; redis-py ignores its refusal.)
# WAIT (keyless: replicas holding this connection's writes) is how a publisher learns
# that an event survives a failover (BusSettings.replica_acks).
# A Redis Cluster client also reads the slot map and the command table (to find each
# command's keys); harmless on one server, where they are never sent.
_CONNECTION = ("+ping", "+hello", "+auth", "+select", "+client|setname",
               "+client|getname", "+client|id", "+quit", "+reset", "+wait",
               "+cluster|slots", "+cluster|shards", "+cluster|nodes", "+cluster|info",
               "+command")  # fmt: skip
# What a service does with its own keys: plain data commands and scripts (whose
# inner commands are checked against these same rules), never @dangerous ones.
_DATA = ("+@read", "+@write", "+@keyspace", "+@transaction", "+time", "+evalsha", "+eval",
         "+script|load", "+script|exists",
         "-@dangerous", "-function", "-scan", "-randomkey")  # fmt: skip
_PUBLISH = ("+xadd", "+xlen", "+xinfo|stream", "+xinfo|groups", "+xpending")
_CONSUME = ("+xreadgroup", "+xack", "+xautoclaim", "+xclaim", "+xgroup|create",
            "+xgroup|createconsumer", "+xinfo|stream", "+xinfo|groups", "+xinfo|consumers",
            "+xpending", "+xlen")  # fmt: skip
_DEAD_LETTER = ("+xadd", "+xlen", "+xrange", "+xrevrange", "+xinfo|stream")
_READ_ONLY = ("+@read", "-@dangerous", "-@write", "-function", "-scan", "-randomkey")
# The exporter: INFO and friends, and SCAN + XINFO for `-check-streams=astra.*`.
# It also tries CONFIG GET, which it may not run (it exports without those metrics).
_EXPORTER = ("+info", "+scan", "+type", "+xinfo|stream", "+xinfo|groups", "+xinfo|consumers",
             "+xlen", "+slowlog|get", "+slowlog|len", "+latency|latest", "+client|list",
             "+memory|usage", "+dbsize", "+command|count", "+cluster|info")  # fmt: skip


@dataclass(frozen=True)
class Consumes:
    group: str
    events: tuple[EventType[Any], ...]


@dataclass(frozen=True)
class RedisUser:
    """One ACL user: root permissions over `own_keys`, a selector per stream it touches."""

    name: str
    own_keys: tuple[str, ...] = ()  # patterns with every data command
    read_keys: tuple[str, ...] = ()  # patterns it may only read
    publishes: tuple[EventType[Any], ...] = ()
    consumes: tuple[Consumes, ...] = ()
    commands: tuple[str, ...] = _DATA  # root command set over own_keys/read_keys
    extra_selectors: tuple[str, ...] = field(default=())

    def selectors(self) -> list[str]:
        out: list[str] = []
        for et in self.publishes:
            stream = et.stream_key
            out.append(_selector((f"~{stream}",), _PUBLISH))
            out.append(_selector((f"%R~{keys.dead_letter_stream(stream)}",), ("+xlen",)))
        for consumed in self.consumes:
            for et in consumed.events:
                stream = et.stream_key
                out.append(_selector((f"~{stream}",), _CONSUME))
                out.append(_selector((f"~{keys.dead_letter_stream(stream)}",), _DEAD_LETTER))
        return [*out, *self.extra_selectors]

    def key_patterns(self) -> list[str]:
        patterns = [f"~{p}" for p in self.own_keys] + [f"%R~{p}" for p in self.read_keys]
        for consumed in self.consumes:
            for et in consumed.events:
                stream = et.stream_key
                # The idempotency markers and failure counts of this group on this stream,
                # and on a cluster the markers of each slot's share of its effects.
                patterns.append(f"~{keys.processed_marker(stream, consumed.group, '*')}")
                patterns.append(f"~{keys.applied_marker_pattern(stream, consumed.group)}")
                patterns.append(f"~{keys.failure_counts(stream, consumed.group)}")
        return patterns

    def rule(self, password: str) -> str:
        digest = hashlib.sha256(password.encode()).hexdigest()
        parts = ["user", self.name, "on", f"#{digest}", "resetkeys", "resetchannels", "-@all"]
        parts += _CONNECTION
        parts += self.key_patterns()
        parts += self.commands if (self.own_keys or self.read_keys) else ()
        parts += self.selectors()
        return " ".join(parts)


def _selector(patterns: Sequence[str], commands: Sequence[str]) -> str:
    return "(" + " ".join([*patterns, *commands]) + ")"


def _service(
    name: str,
    *,
    data: Iterable[str] = (),
    publishes: Iterable[EventType[Any]] = (),
    consumes: Iterable[Consumes] = (),
) -> RedisUser:
    registry_own = (
        keys.registry_instance(name, "*"),
        keys.registry_index(name),
        keys.REGISTRY_SERVICES,
    )
    return RedisUser(
        name=name,
        own_keys=(*data, *registry_own),
        read_keys=(f"{keys.PREFIX}:registry:*",),  # discovery (e.g. the users JWKS)
        publishes=tuple(publishes),
        consumes=tuple(consumes),
    )


def _groups() -> dict[str, str]:
    # The group names live with their handlers; imported here so a rename follows.
    from services.gamification.handlers import GROUP as XP
    from services.nft.handlers import GROUP as NFT
    from services.social.handlers import GROUP as FEED

    return {"gamification": XP, "nft": NFT, "social": FEED, "gateway": "audit_trail_recorders"}


def stack_users() -> list[RedisUser]:
    """Every Redis user of a stack `astra up` runs, least privilege each."""
    group = _groups()
    return [
        _service("users", publishes=(UserRegistered, UserLoggedIn)),
        _service("trading", publishes=(TradeExecuted, PositionUpdated)),
        _service(
            "gamification",
            data=(f"{keys.PREFIX}:gamification:*",),
            publishes=(XpGained, LevelUp, AchievementUnlocked),
            consumes=(Consumes(group["gamification"], (TradeExecuted,)),),
        ),
        _service(
            "nft",
            publishes=(NftMinted,),
            consumes=(Consumes(group["nft"], (AchievementUnlocked,)),),
        ),
        _service(
            "social",
            data=(f"{keys.PREFIX}:social:*",),
            consumes=(
                Consumes(group["social"], (TradeExecuted, LevelUp, AchievementUnlocked, NftMinted)),
            ),
        ),
        _service(
            "gateway",
            data=(f"{keys.PREFIX}:ratelimit:*", f"{keys.PREFIX}:audit:*"),
            publishes=(ActionAudited,),
            consumes=(Consumes(group["gateway"], (ActionAudited,)),),
        ),
        RedisUser(
            "observe",
            read_keys=(f"{keys.PREFIX}:registry:*",),
            commands=(*_READ_ONLY, "+time"),
        ),
        RedisUser("exporter", read_keys=(f"{keys.STREAM_PREFIX}*",), commands=_EXPORTER),
        RedisUser("operator", read_keys=(f"{keys.PREFIX}*",), commands=(*_READ_ONLY, *_EXPORTER)),
    ]


def acl_file(users: Iterable[RedisUser], passwords: dict[str, str]) -> str:
    """The `--aclfile` content: the default user off, then one line per user."""
    lines = ["user default off resetkeys resetchannels -@all"]
    lines += [user.rule(passwords[user.name]) for user in users]
    return "\n".join(lines) + "\n"


def url_for(base_url: str, user: str, password: str) -> str:
    """`redis://host:port/db` with this user's credentials in it."""
    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def without_credentials(url: str) -> str:
    """A Redis URL safe to print or write to stack.json."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
