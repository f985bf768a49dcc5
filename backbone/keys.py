"""Every Redis key and stream name the kernel uses, built in one place.

Keys that must live in the same Redis Cluster slot share a hash tag (`{...}`):
each registry service's keys share `{service}`, and each stream's consumer
book-keeping shares the stream name as tag, so the MULTI/EXEC blocks the kernel
issues never span slots. Streams themselves carry no tag: a consumer reads each
stream with its own command, never one XREADGROUP across streams.
"""

from __future__ import annotations

PREFIX = "astra"

# --- event bus -------------------------------------------------------------

STREAM_PREFIX = f"{PREFIX}."
DLQ_SUFFIX = ".dlq"
ENVELOPE_FIELD = "envelope"  # the one stream-entry field holding the JSON envelope


def stream_name(domain: str, event: str, version: int) -> str:
    return f"{PREFIX}.{domain}.{event}.v{version}"


def dead_letter_stream(stream: str) -> str:
    return f"{stream}{DLQ_SUFFIX}"


def processed_marker(stream: str, group: str, event_id: str) -> str:
    """Per-group "this event's effect is applied" marker (TTL, seconds: BusSettings)."""
    return f"{PREFIX}:bus:{{{stream}}}:processed:{group}:{event_id}"


def applied_marker(slot: int, stream: str, group: str, event_id: str) -> str:
    """On a Redis Cluster: "this event's effects in `slot` are applied", kept in that
    slot (its hash tag hashes there) so one script can check it and apply them."""
    return f"{PREFIX}:bus:{{{slot_tag(slot)}}}:applied:{stream}:{group}:{event_id}"


def applied_marker_pattern(stream: str, group: str) -> str:
    """Every slot's `applied_marker` of this group on this stream (an ACL key pattern:
    `{` and `}` are plain characters in a glob)."""
    return f"{PREFIX}:bus:{{*}}:applied:{stream}:{group}:*"


def slot_tag(slot: int) -> str:
    """A short hash tag whose cluster slot is `slot` (the table is built on first use)."""
    global _SLOT_TAGS
    if _SLOT_TAGS is None:
        from binascii import crc_hqx  # CRC16-CCITT (XMODEM): the cluster's key hash

        tags: list[str | None] = [None] * 16384
        missing, n = 16384, 0
        while missing:  # about 170,000 CRC16s of short strings, once per process
            tag = f"s{n}"
            slot_of = crc_hqx(tag.encode(), 0) % 16384
            if tags[slot_of] is None:
                tags[slot_of] = tag
                missing -= 1
            n += 1
        _SLOT_TAGS = [t for t in tags if t is not None]
    return _SLOT_TAGS[slot]


_SLOT_TAGS: list[str] | None = None


def failure_counts(stream: str, group: str) -> str:
    """Hash entry_id -> handler failures so far; expires with the idle budget."""
    return f"{PREFIX}:bus:{{{stream}}}:failures:{group}"


# --- service registry ------------------------------------------------------


def registry_instance(service: str, instance_id: str) -> str:
    """One instance's signed record; TTL (ms) refreshed by every heartbeat."""
    return f"{PREFIX}:registry:{{{service}}}:instance:{instance_id}"


def registry_index(service: str) -> str:
    """Sorted set instance_id -> expiry (server ms); its own TTL is refreshed too."""
    return f"{PREFIX}:registry:{{{service}}}:index"


REGISTRY_SERVICES = f"{PREFIX}:registry:services"  # sorted set service -> expiry (ms)

# --- rate limits / idempotency used by the edge ------------------------------


def rate_limit(scope: str, subject: str) -> str:
    return f"{PREFIX}:ratelimit:{scope}:{subject}"
