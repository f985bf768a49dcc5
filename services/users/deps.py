"""What a users route needs: the service's context, behind one `Annotated` alias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backbone.outbox import Outbox, OutboxRelay
from backbone.service import context_dependency
from services.users.passwords import Passwords
from services.users.tokens import TokenSigner


@dataclass(frozen=True)
class UsersContext:
    """Built once at start (`services/users/app.py`); routes take it as `Users`."""

    sessions: async_sessionmaker[AsyncSession]
    outbox: Outbox
    relay: OutboxRelay
    passwords: Passwords
    signer: TokenSigner


Users = Annotated[UsersContext, Depends(context_dependency(UsersContext))]
