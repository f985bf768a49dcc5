"""One root error for the kernel, small subclasses per concern.

HTTP status codes never live here: the API layer maps these in one table.
"""

from __future__ import annotations


class AstraError(Exception):
    """Root of every error the kernel raises on purpose."""


class ConfigError(AstraError):
    """A setting is invalid; raised at definition/start time, never mid-flight."""


class BusError(AstraError):
    """Anything the event bus refuses or fails to do."""


class StreamNameError(BusError, ValueError):
    """A stream name does not follow `astra.{domain}.{event}.v{version}`."""


class RetentionError(BusError, ConfigError):
    """A stream retention would trim events a slow group may not have read yet."""


class EnvelopeError(BusError):
    """An entry is not a valid envelope, or its data does not match its event type."""


class UnknownEventTypeError(EnvelopeError):
    """An envelope names a type/version no registered event type declares."""


class PublishError(BusError):
    """Redis did not accept an event; nothing was published."""


class RegistryError(AstraError):
    """Registration or discovery failed."""


class OutboxError(AstraError):
    """The transactional outbox could not store or relay an event."""
