from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class EventData(BaseModel):
    """Event payloads are immutable and refuse unknown fields (a schema change is a new version)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
