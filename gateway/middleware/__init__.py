"""The gateway's own pure-ASGI middleware (correlation, spans and RED metrics come from
`backbone.telemetry.asgi.TelemetryMiddleware`, which wraps all of these)."""

from gateway.middleware.access import UpstreamLogFilter, install_access_log_fields, note_upstream
from gateway.middleware.cors import CorsMiddleware
from gateway.middleware.security import SecurityHeadersMiddleware

__all__ = [
    "CorsMiddleware",
    "SecurityHeadersMiddleware",
    "UpstreamLogFilter",
    "install_access_log_fields",
    "note_upstream",
]
