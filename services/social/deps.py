"""What a social route needs: the service's context, behind one `Annotated` alias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from backbone.service import context_dependency
from services.social.store import FeedStore


@dataclass(frozen=True)
class SocialContext:
    """Built once at start (`services/social/app.py`); the consumer uses it too."""

    feed: FeedStore


Social = Annotated[SocialContext, Depends(context_dependency(SocialContext))]
