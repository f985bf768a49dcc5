"""What an nft route needs: the service's context, behind one `Annotated` alias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from backbone.outbox import OutboxRelay
from backbone.service import context_dependency
from services.nft.store import NftStore


@dataclass(frozen=True)
class NftContext:
    """Built once at start (`services/nft/app.py`); the consumer uses it too."""

    store: NftStore
    relay: OutboxRelay  # woken after a mint commits its `nft_minted` outbox row


Nft = Annotated[NftContext, Depends(context_dependency(NftContext))]
