"""`/api/v1/nft`: the caller's own collection; nobody reads another user's."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.exc import SQLAlchemyError

from backbone.service import ProblemError
from backbone.service.auth import CurrentUser
from services.nft.deps import Nft
from services.nft.schemas import NftPublic
from services.nft.store import Token

router = APIRouter(prefix="/api/v1/nft", tags=["nft"])


@asynccontextmanager
async def _database_answers() -> AsyncIterator[None]:
    try:
        yield
    except SQLAlchemyError as e:
        raise ProblemError(503, "Unavailable", "The NFT database is unreachable.") from e


def _public(token: Token) -> NftPublic:
    return NftPublic(
        token_id=token.token_id,
        name=token.name,
        rarity=token.rarity,
        achievement=token.achievement,
        metadata=token.metadata,
        minted_at=token.minted_at,
    )


@router.get("/collection", response_model=list[NftPublic])
async def collection(
    ctx: Nft,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
) -> list[NftPublic]:
    """The caller's reward tokens, newest first."""
    async with _database_answers():
        found = await ctx.store.collection(user.subject, limit=limit)
    return [_public(t) for t in found]


@router.get("/collection/{token_id}", response_model=NftPublic)
async def token(ctx: Nft, user: CurrentUser, token_id: uuid.UUID) -> NftPublic:
    """One of the caller's tokens (404 for a token that is not theirs)."""
    async with _database_answers():
        found = await ctx.store.token(user.subject, str(token_id))
    if found is None:
        raise ProblemError(404, "Not found", "No such token in your collection.")
    return _public(found)
