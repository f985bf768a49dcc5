"""What a gamification route needs: the service's context, behind one `Annotated` alias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from backbone.service import context_dependency
from services.gamification.store import GamificationStore


@dataclass(frozen=True)
class GamificationContext:
    """Built once at start (`services/gamification/app.py`); the consumer uses it too."""

    store: GamificationStore


Gamification = Annotated[GamificationContext, Depends(context_dependency(GamificationContext))]
