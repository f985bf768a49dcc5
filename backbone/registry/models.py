"""What one service instance tells the registry about itself."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Status = Literal["starting", "ready", "draining"]
STATUSES: tuple[Status, ...] = ("starting", "ready", "draining")

# Names end up inside Redis keys (`astra:registry:{service}:instance:{id}`), so no
# braces (hash tags), colons (key separators) or spaces; bounded for label values.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"


def _new_instance_id() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


class InstanceInfo(BaseModel):
    """One registered instance; immutable, change it with `model_copy(update=...)`.

    info = InstanceInfo(service="trading", url="http://10.0.0.7:8002", version="1.4.0")
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str = Field(pattern=NAME_PATTERN)
    instance_id: str = Field(default_factory=_new_instance_id, pattern=NAME_PATTERN)
    url: str = Field(pattern=r"^https?://\S+$")
    version: str = Field(min_length=1, max_length=64)
    started_at: AwareDatetime = Field(default_factory=_now)
    metadata: dict[str, str] = Field(default_factory=dict)
    # New instances start as "starting": nothing routes to them until they say "ready".
    status: Status = "starting"

    @property
    def ready(self) -> bool:
        return self.status == "ready"
