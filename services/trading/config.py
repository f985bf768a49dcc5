"""Trading settings: `ASTRA_*` variables over the shared service settings."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from backbone.service import ServiceSettings


class OutboxSettings(BaseModel):
    """How trading gets its events onto the bus (`ASTRA_OUTBOX__*`).

    The outbox is trading's only one (`backbone.outbox` takes no settings of its
    own), so its switch lives with the service that chooses how to publish.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Defence switch, on in every real deployment. ASTRA_OUTBOX__ENABLED=false (a chaos
    # drill's `--without-defence`): no outbox row; the order commits and its events are
    # then XADDed directly in the request path (the dual-write anti-pattern). When Redis
    # is unreachable at that moment the events are lost for good: logged as an error,
    # counted in astra_outbox_bypassed_publish_failures_total, and the order still
    # answers 201, since it is committed.
    enabled: bool = True


class Settings(ServiceSettings):
    service: str = "trading"
    port: int = Field(default=8102, ge=0, le=65535)
    # The market (see services/trading/market.py). Same seed and epoch => the same
    # price at the same wall-clock time, on every instance and every run.
    market_seed: int = 42  # ASTRA_MARKET_SEED
    market_tick_ms: int = Field(default=1000, ge=0)  # one price step per tick; 0 = frozen
    market_epoch: AwareDatetime = datetime(2026, 1, 1, tzinfo=UTC)  # tick 0: opening prices
    starting_cash: Decimal = Field(
        default=Decimal("10000.00"), ge=0, max_digits=14, decimal_places=2
    )
    outbox: OutboxSettings = OutboxSettings()  # ASTRA_OUTBOX__ENABLED


@lru_cache
def get_settings() -> Settings:
    return Settings()
