from __future__ import annotations

from datetime import datetime

from backbone.bus.streams import EventType
from contracts._base import EventData


class ActionAuditedData(EventData):
    """Published after a service answered a significant action (the gateway's own
    refusals are counted, not published). `subject` is the account the action was
    about: for register and login the one in the answer, never a bearer header sent
    with it; `attempted_username` is the username a register or login named."""

    action: str  # register | login | order
    subject: str | None
    method: str
    route: str
    status: int
    latency_ms: float
    client_ip: str
    correlation_id: str
    occurred_at: datetime
    attempted_username: str | None = None  # register, login; never a password


ActionAudited = EventType(
    "gateway", "action_audited", 1, ActionAuditedData, "A significant client action completed."
)
