"""The users API: register, log in, who am I, and the public key set.

Events are written through the outbox in the transaction that writes the user
row, so a user exists exactly when `user_registered` is (eventually) published.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response
from sqlalchemy.exc import IntegrityError

from backbone.auth import challenge
from backbone.ids import uuid7
from backbone.service import ProblemError
from backbone.service.auth import CurrentUser
from contracts.users import UserLoggedIn, UserLoggedInData, UserRegistered, UserRegisteredData
from services.users import store
from services.users.deps import Users, UsersContext
from services.users.schemas import TokenCreate, TokenPublic, UserCreate, UserPublic

PROBLEMS = "https://astratrade.dev/problems/"

router = APIRouter(prefix="/api/v1/users", tags=["users"])
wellknown = APIRouter(tags=["users"])


def _conflict(username_taken: bool) -> ProblemError:
    if username_taken:
        return ProblemError(
            409,
            "Username taken",
            "That username is already registered.",
            type_=PROBLEMS + "username-taken",
        )
    return ProblemError(
        409,
        "E-mail taken",
        "That e-mail address is already registered.",
        type_=PROBLEMS + "email-taken",
    )


@router.post("/register", status_code=201, response_model=UserPublic)
async def register(body: UserCreate, ctx: Users) -> UserPublic:
    """Create an account; the password is stored only as an argon2id hash."""
    async with ctx.sessions() as session:
        name_taken, email_taken = await store.taken(session, body.username, body.email)
    if name_taken or email_taken:  # cheap answer before the expensive hash
        raise _conflict(name_taken)
    password_hash = await ctx.passwords.hash(body.password)
    user_id, now = uuid7(), datetime.now(UTC)
    try:
        async with ctx.sessions() as session, session.begin():
            await store.insert_user(
                session,
                user_id=user_id,
                username=body.username,
                email=body.email,
                password_hash=password_hash,
                created_at=now,
            )
            await ctx.outbox.add(
                session,
                UserRegistered,
                UserRegisteredData(user_id=user_id, username=body.username, registered_at=now),
            )
    except IntegrityError:  # lost a race with a concurrent registration
        async with ctx.sessions() as session:
            name_taken, _ = await store.taken(session, body.username, body.email)
        raise _conflict(name_taken) from None
    ctx.relay.notify()
    return UserPublic(id=user_id, username=body.username, email=body.email)


def _bad_credentials() -> ProblemError:
    """One answer for an unknown user and a wrong password."""
    return ProblemError(
        401,
        "Invalid credentials",
        "Unknown username or wrong password.",
        type_=PROBLEMS + "invalid-credentials",
        headers={"WWW-Authenticate": challenge()},
    )


@router.post("/login", response_model=TokenPublic)
async def login(body: TokenCreate, ctx: Users, response: Response) -> TokenPublic:
    """Exchange a username and password for a short-lived bearer token."""
    async with ctx.sessions() as session:
        user = await store.by_username(session, body.username)
    if user is None:
        # Pay the same argon2 cost, so timing does not tell unknown users apart.
        await ctx.passwords.verify_dummy(body.password)
        raise _bad_credentials()
    ok, rehash = await ctx.passwords.verify(user.password_hash, body.password)
    if not ok:
        raise _bad_credentials()
    new_hash = await ctx.passwords.hash(body.password) if rehash else None
    async with ctx.sessions() as session, session.begin():
        await store.record_login(session, user.id, datetime.now(UTC), new_hash)
        await ctx.outbox.add(
            session, UserLoggedIn, UserLoggedInData(user_id=user.id, username=user.username)
        )
    ctx.relay.notify()
    issued = ctx.signer.issue(user.id, user.username)
    response.headers["Cache-Control"] = "no-store"
    return TokenPublic(access_token=issued.token, expires_in=issued.expires_in)


@router.get("/me", response_model=UserPublic)
async def me(user: CurrentUser, ctx: Users) -> UserPublic:
    """The caller's own profile."""
    return await _profile(ctx, user.subject)


async def _profile(ctx: UsersContext, user_id: str) -> UserPublic:
    async with ctx.sessions() as session:
        row = await store.by_id(session, user_id)
    if row is None:
        raise ProblemError(404, "User not found", "The account of this token no longer exists.")
    return UserPublic(id=row.id, username=row.username, email=row.email)


@wellknown.get("/.well-known/jwks.json")
async def jwks(ctx: Users, response: Response) -> dict[str, object]:
    """The public keys that verify this service's tokens (RFC 7517)."""
    response.headers["Cache-Control"] = "public, max-age=300"
    return ctx.signer.jwks()
