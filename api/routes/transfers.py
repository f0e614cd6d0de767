"""REST routes of warm transfers: the list, a transfer's context card, the agent's accept,
decline and disposition, the push feed of offers for consoles, and per campaign the
abandonment rate and the transfer policy. Thin: the work is `outbound.transfers`.

Roles: an agent sees and acts on the transfers offered to them (their user name is the agent's
name); a manager on those of the campaigns they own (another manager's transfer, its context card
and its events answer as if they did not exist); compliance reads all. The feed: `GET /v1/transfers/events?since=N` (JSON,
for polling) and `GET /v1/transfers/stream` (server-sent events, one `data:` line of JSON per
event, `: keep-alive` comments in between).
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.auth import CampaignReader, ManagerUser, user_with
from api.database import NowDep, SessionDep
from api.path_params import RowId
from api.scoping import owner_scope, visible_campaign
from outbound import abandonment, transfer_events, transfers
from outbound.agent_tables import Agent, Transfer
from outbound.models import Campaign
from outbound.db import get_engine, session_scope
from outbound.users import CurrentUser

router = APIRouter(prefix="/v1", tags=["transfers"])

TransferReader = user_with("manager", "compliance", "agent")
AgentActor = user_with("manager", "agent")
KEEP_ALIVE_SECONDS = 15.0


def get_public_url() -> str:
    from outbound.settings import get_settings
    return get_settings().public_url or ""


def get_broadcaster() -> transfer_events.TransferBroadcaster:
    return transfer_events.broadcaster


PublicUrlDep = Annotated[str, Depends(get_public_url)]
BroadcasterDep = Annotated[transfer_events.TransferBroadcaster, Depends(get_broadcaster)]


class DispositionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disposition: str
    note: str | None = None
    available: bool = True


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    wait_seconds: int | None = None
    callback_delay_seconds: int | None = None


def _own_agent(session: Session, user: CurrentUser) -> Agent | None:
    """The agent a user of role agent is (by name); None for other roles."""
    if user.role != "agent":
        return None
    agent = session.execute(select(Agent).where(Agent.name == user.name)).scalar_one_or_none()
    if agent is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail=f"user {user.name!r} is not an agent: add one with that name (outbound agent add)")
    return agent


def _visible_transfer(session: Session, user: CurrentUser, transfer_id: int) -> Transfer:
    transfer = session.get(Transfer, transfer_id)
    if transfer is None or not _owned_transfer_ids(session, user, [transfer_id]):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no transfer {transfer_id}")
    return transfer


def _scoped(session: Session, user: CurrentUser, statement):
    """`statement` over transfers, narrowed to what `user` may see: an agent the transfers offered
    to them, a manager those of their own campaigns, compliance every one."""
    own = _own_agent(session, user)
    if own is not None:
        return statement.where(Transfer.agent_id == own.id)
    scope = owner_scope(user)
    if scope is not None:
        statement = (statement.join(Campaign, Campaign.id == Transfer.campaign_id)
                     .where(Campaign.owner_id == scope))
    return statement


def _owned_transfer_ids(session: Session, user: CurrentUser, transfer_ids) -> set[int]:
    """Those of `transfer_ids` this user may see."""
    ids = set(transfer_ids)
    if not ids:
        return set()
    return set(session.execute(_scoped(session, user, select(Transfer.id).where(Transfer.id.in_(ids)))).scalars())


def _acting_agent(session: Session, user: CurrentUser, transfer: Transfer) -> Agent:
    agent = _own_agent(session, user) or (session.get(Agent, transfer.agent_id) if transfer.agent_id else None)
    if agent is None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"transfer {transfer.id} has no agent")
    return agent


@router.get("/transfers")
def get_transfers(session: SessionDep, user: TransferReader, state: str | None = None,
                  limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
    statement = _scoped(session, user, select(Transfer).order_by(Transfer.id.desc()).limit(limit))
    if state:
        statement = statement.where(Transfer.state == state)
    return [transfers.transfer_dict(t) for t in session.execute(statement).scalars()]


@router.get("/transfers/events")
def get_events(user: TransferReader, session: SessionDep, broadcaster: BroadcasterDep,
               since: int = Query(0, ge=0)) -> list[dict[str, Any]]:
    own = _own_agent(session, user)
    events = broadcaster.since(since, own.id if own else None)
    if owner_scope(user) is not None:
        visible = _owned_transfer_ids(session, user, {event.transfer_id for event in events})
        events = [event for event in events if event.transfer_id in visible]
    return [event.as_dict() for event in events]


@router.get("/transfers/stream")
async def get_stream(user: TransferReader, broadcaster: BroadcasterDep) -> StreamingResponse:
    agent_id = await run_in_threadpool(_agent_id_of, user)
    subscription = broadcaster.subscribe(agent_id)
    seen: dict[int, bool] = {}        # transfer id -> whether this manager may see it

    async def visible(event: transfer_events.TransferEvent) -> bool:
        if owner_scope(user) is None:
            return True
        if event.transfer_id not in seen:
            seen[event.transfer_id] = await run_in_threadpool(_may_see, user, event.transfer_id)
        return seen[event.transfer_id]

    async def events() -> AsyncIterator[str]:
        try:
            while True:
                event = await asyncio.to_thread(subscription.get, KEEP_ALIVE_SECONDS)
                if event is None:
                    yield ": keep-alive\n\n"
                    continue
                if not await visible(event):
                    continue
                yield f"id: {event.seq}\nevent: {event.kind}\ndata: {json.dumps(event.as_dict())}\n\n"
        finally:
            subscription.close()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _agent_id_of(user: CurrentUser) -> int | None:
    with session_scope(get_engine()) as session:
        own = _own_agent(session, user)
        return own.id if own else None


def _may_see(user: CurrentUser, transfer_id: int) -> bool:
    with session_scope(get_engine()) as session:
        return bool(_owned_transfer_ids(session, user, [transfer_id]))


@router.get("/transfers/{transfer_id}")
def get_transfer(transfer_id: RowId, session: SessionDep, user: TransferReader) -> dict[str, Any]:
    return transfers.transfer_dict(_visible_transfer(session, user, transfer_id))


@router.get("/transfers/{transfer_id}/card")
def get_card(transfer_id: RowId, session: SessionDep, user: TransferReader) -> dict[str, Any]:
    return transfers.context_card(session, _visible_transfer(session, user, transfer_id).id)


@router.post("/transfers/{transfer_id}/accept")
def post_accept(transfer_id: RowId, session: SessionDep, now: NowDep, user: AgentActor) -> dict[str, Any]:
    transfer = _visible_transfer(session, user, transfer_id)
    try:
        return transfers.accept(session, transfer, _acting_agent(session, user, transfer), actor=user.name, at=now)
    except transfers.TransferError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from None


@router.post("/transfers/{transfer_id}/decline")
def post_decline(transfer_id: RowId, session: SessionDep, now: NowDep, user: AgentActor,
                 public_url: PublicUrlDep) -> dict[str, Any]:
    transfer = _visible_transfer(session, user, transfer_id)
    try:
        return transfers.decline(session, transfer, _acting_agent(session, user, transfer), actor=user.name, at=now,
                                 public_url=public_url).as_dict()
    except transfers.TransferError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from None


@router.post("/transfers/{transfer_id}/disposition")
def post_disposition(transfer_id: RowId, body: DispositionIn, session: SessionDep, now: NowDep,
                     user: AgentActor) -> dict[str, Any]:
    transfer = _visible_transfer(session, user, transfer_id)
    try:
        transfers.set_disposition(session, transfer, body.disposition, body.note, actor=user.name, at=now,
                                  available=body.available)
    except transfers.TransferError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
    return transfers.transfer_dict(transfer)


@router.get("/campaigns/{campaign_id}/abandonment")
def get_abandonment(campaign_id: RowId, session: SessionDep, now: NowDep, user: CampaignReader) -> dict[str, Any]:
    return abandonment.abandonment_rate(session, visible_campaign(session, user, campaign_id), now).as_dict()


@router.get("/campaigns/{campaign_id}/transfer-policy")
def get_policy(campaign_id: RowId, session: SessionDep, user: CampaignReader) -> dict[str, Any]:
    campaign = visible_campaign(session, user, campaign_id)
    policy = transfers.policy_for(session, campaign.id)
    return {"campaign_id": campaign.id, "wait_seconds": policy.wait_seconds,
            "callback_delay_seconds": policy.callback_delay_seconds}


@router.put("/campaigns/{campaign_id}/transfer-policy")
def put_policy(campaign_id: RowId, body: PolicyIn, session: SessionDep, now: NowDep, user: ManagerUser) -> dict[str, Any]:
    campaign = visible_campaign(session, user, campaign_id)
    try:
        policy = transfers.set_policy(session, campaign.id, wait_seconds=body.wait_seconds,
                                      callback_delay_seconds=body.callback_delay_seconds, actor=user.name, at=now)
    except transfers.TransferError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
    return {"campaign_id": campaign.id, "wait_seconds": policy.wait_seconds,
            "callback_delay_seconds": policy.callback_delay_seconds}
