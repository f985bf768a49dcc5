"""`/api/v1/social/feed`: the public activity feed, everyone's or one user's, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from redis.exceptions import RedisError

from backbone.service import ProblemError
from backbone.service.auth import OptionalUser
from services.social.cursor import MAX_LENGTH, Cursor, InvalidCursor
from services.social.deps import Social
from services.social.schemas import FeedPage

router = APIRouter(prefix="/api/v1/social", tags=["social"])

UserQuery = Query(
    min_length=1,
    max_length=64,
    pattern=r"^[A-Za-z0-9_-]+$",
    description="A username (as registered), or a user id; omitted: everyone's feed.",
)
CursorQuery = Query(
    min_length=1,
    max_length=MAX_LENGTH,
    pattern=r"^[A-Za-z0-9_-]+$",
    description="`next_cursor` of the previous page (opaque).",
)


@router.get("/feed", response_model=FeedPage)
async def feed(
    ctx: Social,
    _: OptionalUser,
    user: Annotated[str | None, UserQuery] = None,
    cursor: Annotated[str | None, CursorQuery] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> FeedPage:
    """Feed entries newest first, a page at a time."""
    try:
        after = Cursor.decode(cursor) if cursor is not None else None
    except InvalidCursor as e:
        raise ProblemError(
            422,
            "Invalid request",
            "The cursor is not one this API issued.",
            errors=[{"loc": ["query", "cursor"], "msg": str(e), "type": "value_error"}],
        ) from e
    try:
        user_id = await ctx.feed.user_id_for(user) if user is not None else None
        items, next_cursor = await ctx.feed.page(user_id, cursor=after, limit=limit)
    except RedisError as e:
        raise ProblemError(503, "Unavailable", "The feed is unreachable.") from e
    return FeedPage(items=items, next_cursor=next_cursor.encode() if next_cursor else None)
