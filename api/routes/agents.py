"""REST routes of agents, mirroring `outbound agent`. Thin: the work is `outbound.agents`.

Roles: a manager adds, removes and sets any agent's status; an agent (a user of role agent
whose name is the agent's) reads the list and sets their own status. Compliance reads.
Errors: 422 input that cannot be used, 404 unknown agent, 409 name taken or change not allowed.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict
from sqlmodel import Session

from api.auth import ManagerUser, user_with
from api.database import NowDep, SessionDep
from api.path_params import RowId
from outbound import agents
from outbound.users import CurrentUser

router = APIRouter(prefix="/v1", tags=["agents"])

AgentsReader = user_with("manager", "compliance", "agent")
StatusWriter = user_with("manager", "agent")


class AgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    reach: str
    status: str = "offline"


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str


def find_or_404(session: Session, key: int | str) -> agents.Agent:
    try:
        return agents.find_agent(session, key)
    except agents.AgentNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None


def require_self_or_manager(user: CurrentUser, agent: agents.Agent) -> None:
    if user.role != "manager" and agent.name != user.name:
        # Another agent's record answers as if it did not exist.
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no agent {agent.id}")


@router.get("/agents")
def get_agents(session: SessionDep, user: AgentsReader) -> list[dict[str, Any]]:
    return [agents.agent_dict(agent) for agent in agents.list_agents(session)]


@router.post("/agents", status_code=status.HTTP_201_CREATED)
def post_agent(body: AgentIn, session: SessionDep, now: NowDep, user: ManagerUser) -> dict[str, Any]:
    try:
        return agents.agent_dict(agents.add_agent(session, body.name, body.reach, status=body.status,
                                                  actor=user.name, at=now))
    except agents.AgentError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
    except agents.AgentExists as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from None


@router.get("/agents/{agent_id}")
def get_agent(agent_id: RowId, session: SessionDep, user: AgentsReader) -> dict[str, Any]:
    return agents.agent_dict(find_or_404(session, agent_id))


@router.post("/agents/{agent_id}/status")
def post_status(agent_id: RowId, body: StatusIn, session: SessionDep, now: NowDep, user: StatusWriter) -> dict[str, Any]:
    agent = find_or_404(session, agent_id)
    require_self_or_manager(user, agent)
    try:
        return agents.agent_dict(agents.set_status(session, agent, body.status, actor=user.name, at=now))
    except agents.AgentError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None


@router.delete("/agents/{agent_id}")
def delete_agent(agent_id: RowId, session: SessionDep, now: NowDep, user: ManagerUser) -> dict[str, Any]:
    agent = find_or_404(session, agent_id)
    try:
        agents.remove_agent(session, agent, actor=user.name, at=now)
    except agents.AgentError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from None
    return {"removed": agent_id}
