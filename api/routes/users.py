"""Users and API tokens, for admins: the REST side of `outbound user` and `outbound token`.

A new token is in the answer once (201); afterwards only its id and prefix are shown.
"""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from api.auth import AdminUser, require_roles
from api.database import NowDep, SessionDep
from outbound.campaigns import CampaignNotFound, campaign_dict, find_campaign
from outbound.users import (
    MAX_NAME_LENGTH, UserError, UserNotFound, add_user, assign_campaign, create_token, list_tokens, list_users, require_user,
    revoke_token, set_active, token_dict, user_dict,
)

router = APIRouter(prefix="/v1", tags=["users"], dependencies=[Depends(require_roles("admin"))])
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


def _user(session: Session, user_id: int):
    try:
        return require_user(session, user_id)
    except UserNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None


@router.get("/users", summary="Every user with role and state")
def get_users(session: SessionDep) -> list[UserOut]:
    return [UserOut(**user_dict(user)) for user in list_users(session)]


@router.post("/users", status_code=status.HTTP_201_CREATED, summary="Add a user",
             responses={422: {"description": "unusable name, role or password; the message names the field"}})
def post_user(body: UserIn, session: SessionDep, now: NowDep, admin: AdminUser) -> UserOut:
    try:
        user = add_user(session, body.name, body.role, password=body.password, actor=admin.name, at=now)
    except UserError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
    return UserOut(**user_dict(user))


@router.get("/users/{user_id}", responses={404: {"description": "no such user"}})
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
    router.post(f"/users/{{user_id}}/{'activate' if active else 'deactivate'}",
                responses={404: {"description": "no such user"}},
                summary="Let a user back in" if active else "Stop a user at once (sessions end, tokens stop)")(route)


_activation_route(True)
_activation_route(False)


@router.get("/tokens", summary="Tokens by id and prefix (never the token itself)")
def get_tokens(session: SessionDep,
               user_id: Annotated[int | None, Query(ge=1, le=2 ** 31 - 1)] = None) -> list[TokenOut]:
    return [TokenOut(**token_dict(row)) for row in list_tokens(session, user_id)]


@router.post("/users/{user_id}/tokens", status_code=status.HTTP_201_CREATED,
             responses={404: {"description": "no such user"}, 422: {"description": "unusable label"}}, summary="Make an API token; shown once")
def post_token(user_id: IdPath, session: SessionDep, now: NowDep, admin: AdminUser,
               body: TokenIn | None = None) -> NewTokenOut:
    user = _user(session, user_id)
    try:
        new = create_token(session, user, label=body.label if body else "", actor=admin.name, at=now)
    except UserError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
    return NewTokenOut(id=new.id, user=new.user, prefix=new.prefix, token=new.token)


@router.delete("/tokens/{token_id}", responses={404: {"description": "no such token"}},
               summary="Revoke a token at once")
def delete_token(token_id: IdPath, session: SessionDep, now: NowDep, admin: AdminUser) -> TokenOut:
    try:
        return TokenOut(**token_dict(revoke_token(session, token_id, actor=admin.name, at=now)))
    except UserNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None


class OwnerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: int = Field(ge=1, le=2 ** 31 - 1, description="the manager who will own the campaign")


@router.put("/campaigns/{campaign_id}/owner", summary="Give a campaign to a manager (e.g. one made with the CLI)",
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
