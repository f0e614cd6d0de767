"""REST routes of campaigns, mirroring `outbound campaign`. Thin: the work is `outbound.campaigns`.

Errors: 422 for input that cannot be used (the message names the field), 404 for an unknown
campaign, 409 for a name already taken or a change the campaign's status forbids.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, status
from sqlmodel import Session

from outbound.campaigns import (
    CampaignError, CampaignExists, CampaignNotFound, InvalidTransition, campaign_dict, campaign_status,
    create_campaign, find_campaign, pause_campaign, resume_campaign, start_campaign, stop_campaign,
    validate_campaign,
)
from outbound.db import get_engine, session_scope

router = APIRouter(prefix="/v1", tags=["campaigns"])


def get_session() -> Iterator[Session]:
    with session_scope(get_engine()) as session:
        yield session


def get_now() -> datetime:
    return datetime.now(timezone.utc)


def get_actor(x_actor: Annotated[str | None, Header(max_length=200)] = None) -> str:
    return (x_actor or "").strip() or "api"


SessionDep = Annotated[Session, Depends(get_session)]
NowDep = Annotated[datetime, Depends(get_now)]
ActorDep = Annotated[str, Depends(get_actor)]


@router.post("/campaigns", status_code=status.HTTP_201_CREATED)
def post_campaign(body: Annotated[Any, Body(description="name, channel, purpose, voice, automated, caller_id, "
                                                         "script, settings {hours, start_date, end_date, cps, "
                                                         "max_concurrent, retry {outcome: {delay_seconds, max_attempts}}}")],
                  session: SessionDep, now: NowDep, actor: ActorDep) -> dict:
    if not isinstance(body, dict):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="campaign: expected a JSON object")
    try:
        spec = validate_campaign(body)
        return campaign_dict(create_campaign(session, spec, actor=actor, at=now))
    except CampaignError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
    except CampaignExists as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from None


@router.get("/campaigns/{campaign_id}")
def get_campaign(campaign_id: int, session: SessionDep) -> dict:
    return campaign_status(session, _find(session, campaign_id)).to_dict()


def _find(session: Session, campaign_id: int):
    try:
        return find_campaign(session, campaign_id)
    except CampaignNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None


def _lifecycle_route(action: Callable, path: str) -> None:
    def route(campaign_id: int, session: SessionDep, now: NowDep, actor: ActorDep) -> dict:
        campaign = _find(session, campaign_id)
        try:
            count = action(session, campaign, actor=actor, at=now)
        except InvalidTransition as error:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from None
        return {**campaign_dict(campaign), "attempts_changed": count or 0}
    route.__name__ = f"{path}_campaign"
    router.post(f"/campaigns/{{campaign_id}}/{path}")(route)


for _action, _path in ((start_campaign, "start"), (pause_campaign, "pause"), (resume_campaign, "resume"),
                       (stop_campaign, "stop")):
    _lifecycle_route(_action, _path)
