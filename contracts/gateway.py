from __future__ import annotations

from datetime import datetime

from backbone.bus.streams import EventType
from contracts._base import EventData


class ActionAuditedData(EventData):
    """Published after the upstream answered: what happened, never what was attempted."""

    action: str  # register | login | order
    subject: str | None
    method: str
    route: str
    status: int
    latency_ms: float
    client_ip: str
    correlation_id: str
    occurred_at: datetime


ActionAudited = EventType(
    "gateway", "action_audited", 1, ActionAuditedData, "A significant client action completed."
)
