"""Users and API tokens: the REST side of `outbound user` and `outbound token`.

Admins add users, reset passwords, (de)activate, list and revoke tokens. A token, though, is made
only by the user it acts as, or by an admin for an admin: a token minted for someone else would
let an admin act as compliance and read consent data no admin is meant to see. Every token made
is audited (`token.created`, naming who made it for whom). A new token is in the answer once
(201); afterwards only its id and prefix are shown.
"""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from api.auth import AdminUser, require_roles, user_with
from api.database import NowDep, SessionDep
from outbound.campaigns import CampaignNotFound, campaign_dict, find_campaign
from outbound.users import (
    MAX_NAME_LENGTH, MIN_PASSWORD_LENGTH, Role, UserError, UserNotFound, add_user, assign_campaign, create_token,
    list_tokens, list_users, require_user, reset_password, revoke_token, set_active, token_dict, user_dict,
)

router = APIRouter(prefix="/v1", tags=["users"])
# Everything but a token's creation is for admins only.
admin_router = APIRouter(dependencies=[Depends(require_roles("admin"))])
AnyUser = user_with("manager", "compliance", "agent", "admin")
IdPath = Annotated[int, Path(ge=1, le=2 ** 31 - 1)]


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    role: Literal["manager", "compliance", "agent", "admin"]
    password: str | None = Field(default=None, max_length=1000, description="for the pages; omit for token-only users")


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(default="", max_length=200, description="what the token is for")


class UserOut(BaseModel):
    id: int
    name: str
    role: str
    active: bool
    has_password: bool
    created_at: str | None


class TokenOut(BaseModel):
    id: int
    user_id: int
    label: str
    prefix: str
    created_at: str | None
    revoked_at: str | None


class NewTokenOut(BaseModel):
    id: int
    user: str
    prefix: str
    token: str = Field(description="shown once: only its sha256 is stored")


def _token_holder(session: Session, caller, user_id: int):
    """The user a token may be made for by `caller`: themself, or (for an admin) another admin."""
    if user_id == caller.id:
        return _user(session, user_id)
    if caller.role != Role.admin:
        # Other users' ids are not revealed to non-admins.
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user with id {user_id} (you may make tokens "
                                                              "only for yourself)")
    user = _user(session, user_id)
    if user.role != Role.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail=f"an admin may make tokens only for admins; user {user.name!r} is "
                                   f"{user.role}: they sign in and make their own (set a password with "
                                   f"POST /v1/users/{user_id}/password)")
    return user


def _user(session: Session, user_id: int):
    try:
        return require_user(session, user_id)
    except UserNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None


@admin_router.get("/users", summary="Every user with role and state")
def get_users(session: SessionDep) -> list[UserOut]:
    return [UserOut(**user_dict(user)) for user in list_users(session)]


@admin_router.post("/users", status_code=status.HTTP_201_CREATED, summary="Add a user",
             responses={422: {"description": "unusable name, role or password; the message names the field"}})
def post_user(body: UserIn, session: SessionDep, now: NowDep, admin: AdminUser) -> UserOut:
    try:
        user = add_user(session, body.name, body.role, password=body.password, actor=admin.name, at=now)
    except UserError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
    return UserOut(**user_dict(user))


@admin_router.get("/users/{user_id}", responses={404: {"description": "no such user"}})
def get_user(user_id: IdPath, session: SessionDep) -> UserOut:
    return UserOut(**user_dict(_user(session, user_id)))


def _activation_route(active: bool) -> None:
    def route(user_id: IdPath, session: SessionDep, now: NowDep, admin: AdminUser) -> UserOut:
        user = _user(session, user_id)
        if not active and user.id == admin.id:
            # The last way back in would be the CLI on the server; refuse the foot-gun.
            raise HTTPException(status.HTTP_409_CONFLICT, detail="an admin cannot deactivate themselves")
        return UserOut(**user_dict(set_active(session, user, active, actor=admin.name, at=now)))
    route.__name__ = "activate_user" if active else "deactivate_user"
    admin_router.post(f"/users/{{user_id}}/{'activate' if active else 'deactivate'}",
                responses={404: {"description": "no such user"}},
                summary="Let a user back in" if active else "Stop a user at once (sessions end, tokens stop)")(route)


_activation_route(True)
_activation_route(False)


@admin_router.get("/tokens", summary="Tokens by id and prefix (never the token itself)")
def get_tokens(session: SessionDep,
               user_id: Annotated[int | None, Query(ge=1, le=2 ** 31 - 1)] = None) -> list[TokenOut]:
    return [TokenOut(**token_dict(row)) for row in list_tokens(session, user_id)]


@router.post("/users/{user_id}/tokens", status_code=status.HTTP_201_CREATED,
             responses={403: {"description": "an admin may make tokens for admins only"},
                        404: {"description": "no such user (or not you)"}, 422: {"description": "unusable label"}},
             summary="Make an API token for yourself (an admin: for an admin); shown once")
def post_token(user_id: IdPath, session: SessionDep, now: NowDep, caller: AnyUser,
               body: TokenIn | None = None) -> NewTokenOut:
    user = _token_holder(session, caller, user_id)
    try:
        new = create_token(session, user, label=body.label if body else "", actor=caller.name, at=now)
    except UserError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
    return NewTokenOut(id=new.id, user=new.user, prefix=new.prefix, token=new.token)


@admin_router.delete("/tokens/{token_id}", responses={404: {"description": "no such token"}},
               summary="Revoke a token at once")
def delete_token(token_id: IdPath, session: SessionDep, now: NowDep, admin: AdminUser) -> TokenOut:
    try:
        return TokenOut(**token_dict(revoke_token(session, token_id, actor=admin.name, at=now)))
    except UserNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None


class OwnerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: int = Field(ge=1, le=2 ** 31 - 1, description="the manager who will own the campaign")


@admin_router.put("/campaigns/{campaign_id}/owner", summary="Give a campaign to a manager (e.g. one made with the CLI)",
            responses={404: {"description": "no such campaign or user"},
                       422: {"description": "the user is not a manager"}})
def put_campaign_owner(campaign_id: IdPath, body: OwnerIn, session: SessionDep, now: NowDep,
                       admin: AdminUser) -> dict:
    try:
        campaign = find_campaign(session, campaign_id)
    except CampaignNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None
    try:
        assign_campaign(session, campaign, _user(session, body.user_id), actor=admin.name, at=now)
    except UserError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
    return {**campaign_dict(campaign), "owner_id": campaign.owner_id}


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1000)


@admin_router.post("/users/{user_id}/password", responses={404: {"description": "no such user"},
                                                          422: {"description": "too short a password"}},
                   summary="Set a user's password (their sessions end); audited")
def post_password(user_id: IdPath, body: PasswordIn, session: SessionDep, now: NowDep, admin: AdminUser) -> UserOut:
    try:
        user = reset_password(session, _user(session, user_id), body.password, actor=admin.name, at=now)
    except UserError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
    return UserOut(**user_dict(user))


router.include_router(admin_router)
