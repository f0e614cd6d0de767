"""Agents: who takes transferred callers, how they are reached and whether they are free.

Status: available (may be offered a caller) → busy (on a transfer) → wrap_up (writing the
disposition) → available; offline takes an agent out. Every change a person makes is audited
with its actor; the transfer engine's own changes are audited as actor `transfer`.
"""
from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

import phonenumbers
from sqlalchemy import select, update
from sqlmodel import Session

from outbound import audit
from outbound.agent_tables import Agent

CLIENT_IDENTITY = re.compile(r"^client:[A-Za-z0-9_.\-]{1,120}$")
NAME = re.compile(r"^[A-Za-z0-9_.\- ]{1,80}$")


class AgentStatus(StrEnum):
    AVAILABLE = "available"
    BUSY = "busy"
    WRAP_UP = "wrap_up"
    OFFLINE = "offline"


class AgentError(ValueError):
    """Input that cannot be used; the message says what to fix."""


class AgentNotFound(LookupError):
    """No agent has that name or id."""


class AgentExists(ValueError):
    """An agent with that name already exists."""


def validate_reach(reach: str) -> str:
    """An E.164 number (+14155550123) or a Twilio Client identity (client:NAME)."""
    reach = (reach or "").strip()
    if reach.startswith("client:"):
        if not CLIENT_IDENTITY.match(reach):
            raise AgentError(f"reach: {reach!r} is not a Twilio Client identity: use client:NAME with "
                             "letters, digits, '.', '_' or '-' (at most 120)")
        return reach
    try:
        number = phonenumbers.parse(reach, None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise AgentError(f"reach: {reach!r} is neither an E.164 number (e.g. +14155550123) nor "
                         "a Twilio Client identity (client:NAME)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def parse_status(status: str) -> AgentStatus:
    try:
        return AgentStatus(status)
    except ValueError:
        raise AgentError(f"status: {status!r} is not one of "
                         f"{', '.join(s.value for s in AgentStatus)}") from None


def add_agent(session: Session, name: str, reach: str, *, actor: str, at: datetime,
              status: str = "offline") -> Agent:
    name = (name or "").strip()
    if not NAME.match(name):
        raise AgentError(f"name: {name!r} must be 1-80 letters, digits, spaces, '.', '_' or '-'")
    reach, state = validate_reach(reach), parse_status(status)
    if session.execute(select(Agent.id).where(Agent.name == name)).first() is not None:
        raise AgentExists(f"name: an agent named {name!r} already exists")
    agent = Agent(name=name, reach=reach, status=state.value, status_changed_at=at, created_at=at,
                  updated_at=at)
    session.add(agent)
    session.flush()
    audit.append(session, actor=actor, action="agent.added", subject=f"agent:{agent.id}", at=at,
                 payload=agent_dict(agent))
    return agent


def find_agent(session: Session, key: str | int) -> Agent:
    agent = None
    if isinstance(key, int) or str(key).isdigit():
        agent = session.get(Agent, int(key))
    if agent is None and isinstance(key, str):
        agent = session.execute(select(Agent).where(Agent.name == key)).scalar_one_or_none()
    if agent is None:
        raise AgentNotFound(f"no agent {key!r}")
    return agent


def list_agents(session: Session) -> list[Agent]:
    return list(session.execute(select(Agent).order_by(Agent.id)).scalars())


def set_status(session: Session, agent: Agent, status: str, *, actor: str, at: datetime,
               reason: str | None = None) -> Agent:
    new = parse_status(status)
    previous = agent.status
    agent.status, agent.status_changed_at, agent.updated_at = new.value, at, at
    session.add(agent)
    session.flush()
    audit.append(session, actor=actor, action="agent.status", subject=f"agent:{agent.id}", at=at,
                 payload={"from": previous, "to": new.value, **({"reason": reason} if reason else {})})
    return agent


def remove_agent(session: Session, agent: Agent, *, actor: str, at: datetime) -> None:
    """An agent on a call cannot be removed: it would leave a caller without anyone."""
    if agent.status == AgentStatus.BUSY:
        raise AgentError(f"agent {agent.name!r} is busy on a transfer; set it offline after the call")
    payload = agent_dict(agent)
    from outbound.agent_tables import Transfer
    session.execute(update(Transfer).where(Transfer.agent_id == agent.id).values(agent_id=None))
    session.delete(agent)
    session.flush()
    audit.append(session, actor=actor, action="agent.removed", subject=f"agent:{payload['id']}", at=at,
                 payload=payload)


def reserve_free_agent(session: Session, *, at: datetime, exclude: set[int] = frozenset()) -> Agent | None:
    """The agent free longest, switched to busy in one conditional update, so two transfers at
    once never get the same agent (the loser tries the next one)."""
    candidates = session.execute(
        select(Agent.id).where(Agent.status == AgentStatus.AVAILABLE)
        .order_by(Agent.status_changed_at, Agent.id)).scalars().all()
    for agent_id in candidates:
        if agent_id in exclude:
            continue
        taken = session.execute(update(Agent).where(Agent.id == agent_id,
                                                    Agent.status == AgentStatus.AVAILABLE)
                                .values(status=AgentStatus.BUSY.value, status_changed_at=at,
                                        updated_at=at)).rowcount
        if taken:
            agent = session.get(Agent, agent_id)
            session.refresh(agent)
            return agent
    return None


def free_agent_count(session: Session) -> int:
    return len(session.execute(select(Agent.id).where(Agent.status == AgentStatus.AVAILABLE)).all())


def any_agent_defined(session: Session) -> bool:
    """Whether warm transfer is in use at all: an agent exists, whatever its status."""
    return session.execute(select(Agent.id).limit(1)).first() is not None


def agent_count(session: Session) -> int:
    return len(session.execute(select(Agent.id).where(Agent.status != AgentStatus.OFFLINE)).all())


def agent_dict(agent: Agent) -> dict[str, Any]:
    return {"id": agent.id, "name": agent.name, "status": agent.status, "reach": agent.reach,
            "status_changed_at": audit.iso_utc(agent.status_changed_at) if agent.status_changed_at else None}
