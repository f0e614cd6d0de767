"""REST routes of campaigns, mirroring `outbound campaign`. Thin: the work is `outbound.campaigns`.

Errors: 422 for input that cannot be used (the message names the field), 404 for an unknown
campaign, 409 for a name already taken or a change the campaign's status forbids.

Roles: a manager creates campaigns (becoming their owner) and reads and changes only their own;
compliance reads every campaign. Another manager's campaign answers 404, like a missing one.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from api.auth import CampaignReader, ManagerUser
from api.database import NowDep, SessionDep
from api.routes.dnc import registry_store
from api.scoping import owner_scope, visible_campaign
from consent.rules import load_pack
from outbound.campaigns import (
    CAMPAIGN_STATUSES, CampaignError, CampaignExists, InvalidTransition, campaign_dict, campaign_status,
    create_campaign, newest_campaigns, pause_campaign, resume_campaign, start_campaign, stop_campaign,
    update_settings, validate_campaign,
)
from scheduler.simulate import simulate

router = APIRouter(prefix="/v1", tags=["campaigns"])
CampaignId = Annotated[int, Path(ge=1, le=2 ** 31 - 1)]
SIMULATION_YEARS = (2000, 2100)     # the rule packs' holiday tables and zone data cover these


@router.post("/campaigns", status_code=status.HTTP_201_CREATED)
def post_campaign(body: Annotated[Any, Body(description="name, channel, purpose, voice, automated, caller_id, "
                                                         "script, settings {hours, start_date, end_date, cps, "
                                                         "max_concurrent, retry {outcome: {delay_seconds, max_attempts}}, "
                                                         "conversation {script, record_calls, machine_policy, "
                                                         "seller_name, callback_number}}")],
                  session: SessionDep, now: NowDep, user: ManagerUser) -> dict:
    if not isinstance(body, dict):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="campaign: expected a JSON object")
    try:
        spec = validate_campaign(body)
        campaign = create_campaign(session, spec, actor=user.name, at=now)
        campaign.owner_id = user.id
        session.add(campaign)
        session.flush()
        return campaign_dict(campaign)
    except CampaignError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
    except CampaignExists as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from None


@router.get("/campaigns/{campaign_id}")
def get_campaign(campaign_id: CampaignId, session: SessionDep, user: CampaignReader) -> dict:
    return campaign_status(session, visible_campaign(session, user, campaign_id)).to_dict()


def _lifecycle_route(action: Callable, path: str) -> None:
    def route(campaign_id: CampaignId, session: SessionDep, now: NowDep, user: ManagerUser) -> dict:
        campaign = visible_campaign(session, user, campaign_id)
        try:
            count = action(session, campaign, actor=user.name, at=now)
        except InvalidTransition as error:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from None
        return {**campaign_dict(campaign), "attempts_changed": count or 0}
    route.__name__ = f"{path}_campaign"
    router.post(f"/campaigns/{{campaign_id}}/{path}")(route)


for _action, _path in ((start_campaign, "start"), (pause_campaign, "pause"), (resume_campaign, "resume"),
                       (stop_campaign, "stop")):
    _lifecycle_route(_action, _path)


@router.patch("/campaigns/{campaign_id}/settings",
              summary="Change settings (hours, dates, pacing, retries, conversation); the fields sent replace "
                      "theirs, the rest stay. Not once the campaign is completed.")
def patch_campaign_settings(campaign_id: CampaignId,
                            body: Annotated[Any, Body(description="any of hours, start_date, end_date, cps, "
                                                                  "max_concurrent, retry, conversation")],
                            session: SessionDep, now: NowDep, user: ManagerUser) -> dict:
    if not isinstance(body, dict) or not body:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail="settings: expected a JSON object with at least one setting")
    campaign = visible_campaign(session, user, campaign_id)
    try:
        return campaign_dict(update_settings(session, campaign, body, actor=user.name, at=now))
    except CampaignError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
    except InvalidTransition as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from None


@router.get("/campaigns", summary="Campaigns, newest first: a manager's own, every one for compliance")
def list_campaigns(session: SessionDep, user: CampaignReader,
                   status_: Annotated[Literal[CAMPAIGN_STATUSES] | None,
                                      Query(alias="status")] = None) -> list[dict]:
    return [campaign_dict(campaign) for campaign in newest_campaigns(session, owner_id=owner_scope(user), status=status_)]


class SimulateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: datetime = Field(description="simulated start, ISO 8601 with zone")
    days: int = Field(default=7, ge=1, le=366)


@router.post("/campaigns/{campaign_id}/simulate", summary="Dry run: what the gate would allow, defer and block; "
             "stores and sends nothing", responses={404: {"description": "no such campaign"},
                                                    422: {"description": "start without a zone or out of range"}})
def simulate_campaign(campaign_id: CampaignId, body: SimulateIn, session: SessionDep, user: CampaignReader) -> dict:
    campaign = visible_campaign(session, user, campaign_id)
    if body.start.tzinfo is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="start: give a time zone (e.g. Z)")
    if not SIMULATION_YEARS[0] <= body.start.year <= SIMULATION_YEARS[1]:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail=f"start: a year from {SIMULATION_YEARS[0]} to {SIMULATION_YEARS[1]}")
    report = simulate(session.get_bind(), str(campaign.id), start=body.start, days=body.days, pack=load_pack(),
                      registry=registry_store())
    return report.to_dict()
