"""The correlation ID of the work in progress, carried in a context variable.

Taken from `X-Correlation-ID` when it is sane, generated otherwise; put on every
log line, outgoing call and published event; restored by consumers from the
envelope. The cause of the current work (the event being handled) travels the
same way so published events can name their `causation_id`.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar, Token

HEADER = "X-Correlation-ID"
HEADER_LOWER = b"x-correlation-id"
MAX_LENGTH = 128

_correlation_id: ContextVar[str | None] = ContextVar("astra_correlation_id", default=None)
_causation_id: ContextVar[str | None] = ContextVar("astra_causation_id", default=None)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def is_valid(value: str | None) -> bool:
    """Printable ASCII without spaces, 1..128 chars: safe in headers, logs and labels."""
    if not value or len(value) > MAX_LENGTH:
        return False
    return all(33 <= ord(ch) <= 126 for ch in value)


def accept(value: str | None) -> str:
    """The incoming ID when valid, else a fresh one (never trust unbounded input)."""
    return value if value is not None and is_valid(value) else new_correlation_id()


def get_correlation_id() -> str | None:
    return _correlation_id.get()


def ensure_correlation_id() -> str:
    """The current ID, creating one for work that started without (e.g. a timer)."""
    current = _correlation_id.get()
    if current is None:
        current = new_correlation_id()
        _correlation_id.set(current)
    return current


def set_correlation_id(value: str | None) -> Token[str | None]:
    return _correlation_id.set(value)


def reset_correlation_id(token: Token[str | None]) -> None:
    _correlation_id.reset(token)


def get_causation_id() -> str | None:
    return _causation_id.get()


def set_causation_id(value: str | None) -> Token[str | None]:
    return _causation_id.set(value)


def reset_causation_id(token: Token[str | None]) -> None:
    _causation_id.reset(token)
