"""The upstream instance on the access log line.

`TelemetryMiddleware` (backbone) writes one JSON line per request on the
`astra.access` logger, with method, route template, status, duration, and the
correlation and trace IDs. Which instance answered is known only down in the
proxy, so the proxy notes it in a context variable (the request runs in one task,
and the middleware's `finally` sees what the awaited proxy set) and a filter on
that logger copies it onto the record.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

_upstream: ContextVar[str | None] = ContextVar("astra_gateway_upstream", default=None)


def note_upstream(instance_id: str | None) -> None:
    """Called by the proxy once an instance answered (or was tried last)."""
    _upstream.set(instance_id)


class UpstreamLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        instance = _upstream.get()
        if instance is not None and not hasattr(record, "upstream_instance"):
            record.upstream_instance = instance
        return True


_FILTER = UpstreamLogFilter()


def install_access_log_fields() -> None:
    """Idempotent: one filter on the access logger, however many apps a process builds."""
    logger = logging.getLogger("astra.access")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
