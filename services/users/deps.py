"""What a users route needs, as `Annotated` dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backbone.outbox import Outbox, OutboxRelay
from services.users.passwords import Passwords
from services.users.tokens import TokenSigner


@dataclass(frozen=True)
class UsersContext:
    """Built once by the app's start hook; kept in `runtime.state["users"]`."""

    sessions: async_sessionmaker[AsyncSession]
    outbox: Outbox
    relay: OutboxRelay
    passwords: Passwords
    signer: TokenSigner


def users_context(request: Request) -> UsersContext:
    ctx: UsersContext = request.app.state.runtime.state["users"]
    return ctx


Users = Annotated[UsersContext, Depends(users_context)]
