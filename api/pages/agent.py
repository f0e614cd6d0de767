"""The agent console: status (available, busy, wrap-up), the incoming warm transfer's context card
pushed the moment it is offered, accept and decline, the live call, and the disposition form.

The signed-in user is the agent of the same name (`outbound agent add NAME`), as in the REST
transfer routes. Offers wake the console's SSE stream through `outbound.transfer_events` (looked at every 0.2 s,
without holding a thread); the panel itself is always rendered from the transfers table (the
record of truth), and re-read every second anyway, so an offer published just before its
transaction commits still shows within a second, and a console that reconnects shows the
current state, not a replay of old events.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse
from sqlalchemy import Engine, desc, or_, select
from sqlmodel import Session

from api.pages.access import PageRoute, page_user
from api.pages.deps import EngineDep, NowDep, SessionDep
from api.pages.rendering import render, templates
from api.pages.sse import HEARTBEAT_SECONDS, sse_event, sse_response
from outbound import agents, transfer_events, transfers
from outbound.agent_tables import Agent, Transfer

router = APIRouter(prefix="/agent", route_class=PageRoute, include_in_schema=False)
AgentUser = page_user("agent")

RECHECK_SECONDS = 1.0        # the panel is re-read this often even without an event
WAKE_CHECK_SECONDS = 0.2     # how often the stream looks for events: an offer shows within this
SELF_STATUSES = {"available": "Available", "wrap_up": "Wrap-up", "offline": "Offline"}


def own_agent(session: Session, user) -> Agent | None:
    return session.execute(select(Agent).where(Agent.name == user.name)).scalar_one_or_none()


def current_transfer(session: Session, agent: Agent) -> Transfer | None:
    """The transfer the console is about: one being offered or on the line, else the last call
    this agent took that still needs a disposition."""
    return session.execute(
        select(Transfer).where(Transfer.agent_id == agent.id, or_(
            Transfer.state.in_(("ringing_agent", "connected")),
            (Transfer.agent_joined_at.is_not(None) & Transfer.disposition.is_(None))))
        .order_by(desc(Transfer.id)).limit(1)).scalar_one_or_none()


def console_context(session: Session, user) -> dict:
    agent = own_agent(session, user)
    transfer = current_transfer(session, agent) if agent else None
    card = transfers.context_card(session, transfer.id) if transfer else None
    return {"agent": agent, "transfer": transfer, "card": card, "dispositions": transfers.DISPOSITIONS,
            "self_statuses": SELF_STATUSES}


@router.get("")
def console(request: Request, session: SessionDep, user=AgentUser):
    return render(request, "agent/console.html", {**console_context(session, user), "values": {}, "errors": {}})


@router.get("/events")
async def console_events(request: Request, engine: EngineDep, user=AgentUser):
    agent_id = await run_in_threadpool(_agent_id, engine, user)
    if agent_id is None:
        raise HTTPException(404, detail=f"user {user.name!r} is not an agent: add one with that name")
    subscription = transfer_events.broadcaster.subscribe(agent_id)

    def render_panel() -> str:
        with Session(engine) as session:
            context = {**console_context(session, user), "values": {}, "errors": {}}
            return templates.get_template("agent/_panel.html").render(**context)

    async def stream() -> AsyncIterator[str]:
        last, since_render, quiet, woken = None, RECHECK_SECONDS, 0.0, False
        try:
            while not await request.is_disconnected():
                if woken or since_render >= RECHECK_SECONDS:
                    html, since_render = await run_in_threadpool(render_panel), 0.0
                    if html != last:
                        last, quiet = html, 0.0
                        yield sse_event("panel", html)
                if quiet >= HEARTBEAT_SECONDS:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                await asyncio.sleep(WAKE_CHECK_SECONDS)
                since_render += WAKE_CHECK_SECONDS
                quiet += WAKE_CHECK_SECONDS
                # Checked without blocking: a console must not hold a thread while it waits.
                woken = _drain(subscription)
        finally:
            subscription.close()

    return sse_response(stream())


def _drain(subscription) -> bool:
    """True when any event arrived since the last look (all of them are consumed)."""
    arrived = False
    while subscription.get(timeout=0) is not None:
        arrived = True
    return arrived


def _agent_id(engine: Engine, user) -> int | None:
    with Session(engine) as session:
        agent = own_agent(session, user)
        return agent.id if agent else None


def _acting(session: Session, user, transfer_id: int) -> tuple[Agent, Transfer]:
    agent = own_agent(session, user)
    transfer = session.get(Transfer, transfer_id)
    if agent is None or transfer is None or transfer.agent_id != agent.id:
        raise HTTPException(404, detail=f"no transfer {transfer_id} for you")
    return agent, transfer


@router.post("/status")
def set_own_status(request: Request, session: SessionDep, now: NowDep, user=AgentUser,
                   status: Annotated[str, Form(max_length=20)] = ""):
    agent = own_agent(session, user)
    if agent is None:
        raise HTTPException(404, detail=f"user {user.name!r} is not an agent: add one with that name")
    if status not in SELF_STATUSES:
        raise HTTPException(422, detail=f"status: choose {', '.join(SELF_STATUSES)} (busy is set by a call)")
    if agent.status == "busy":
        raise HTTPException(409, detail="status: you are on a call; it changes when the call ends")
    agents.set_status(session, agent, status, actor=user.name, at=now, reason="console")
    if not request.headers.get("HX-Request"):
        return RedirectResponse("/agent", status_code=303)
    return render(request, "agent/_panel.html", {**console_context(session, user), "values": {}, "errors": {}})


@router.post("/transfers/{transfer_id}/accept")
def accept(request: Request, transfer_id: int, session: SessionDep, now: NowDep, user=AgentUser):
    agent, transfer = _acting(session, user, transfer_id)
    try:
        transfers.accept(session, transfer, agent, actor=user.name, at=now)
    except transfers.TransferError as error:
        raise HTTPException(409, detail=str(error)) from None
    context = {**console_context(session, user), "values": {}, "errors": {}, "accepted": True}
    return render(request, "agent/_panel.html", context)


@router.post("/transfers/{transfer_id}/decline")
def decline(request: Request, transfer_id: int, session: SessionDep, now: NowDep, user=AgentUser):
    from outbound.settings import get_settings

    agent, transfer = _acting(session, user, transfer_id)
    try:
        transfers.decline(session, transfer, agent, actor=user.name, at=now,
                          public_url=get_settings().public_url or "")
    except transfers.TransferError as error:
        raise HTTPException(409, detail=str(error)) from None
    return render(request, "agent/_panel.html", {**console_context(session, user), "values": {}, "errors": {}})


@router.post("/transfers/{transfer_id}/disposition")
def disposition(request: Request, transfer_id: int, session: SessionDep, now: NowDep, user=AgentUser,
                outcome: Annotated[str, Form(max_length=40)] = "",
                note: Annotated[str, Form(max_length=2000)] = ""):
    _agent, transfer = _acting(session, user, transfer_id)
    values = {"outcome": outcome, "note": note}
    if not outcome:
        return render(request, "agent/_panel.html", {**console_context(session, user), "values": values, "errors": {
            "outcome": f"choose one: {', '.join(transfers.DISPOSITIONS)}"}}, status_code=422)
    try:
        transfers.set_disposition(session, transfer, outcome, note.strip() or None, actor=user.name, at=now)
    except transfers.TransferError as error:
        session.rollback()
        message = str(error).removeprefix("disposition: ")
        return render(request, "agent/_panel.html", {**console_context(session, user), "values": values,
                                                     "errors": {"outcome": message}}, status_code=422)
    return render(request, "agent/_panel.html", {**console_context(session, user), "values": {}, "errors": {},
                                                 "done": transfer})
