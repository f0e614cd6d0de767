"""The audit log for compliance: verify the hash chain (`outbound audit verify`) and read the
latest events (`outbound audit tail`)."""
from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from api.auth import require_roles
from api.database import SessionDep
from outbound import audit

router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[Depends(require_roles("compliance"))])


class BrokenLinkOut(BaseModel):
    event_id: int
    reason: str
    expected_hash: str | None
    found_hash: str | None


class VerifyOut(BaseModel):
    ok: bool
    events_checked: int
    last_id: int
    broken: BrokenLinkOut | None


class EventOut(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    subject: str | None
    payload: Any
    prev_hash: str
    hash: str


@router.get("/verify", summary="Check every link of the chain; `ok` is false at the first broken one")
def verify(session: SessionDep) -> VerifyOut:
    return VerifyOut(**audit.verify(session).to_dict())


@router.get("/events", summary="The latest events, oldest first: who did what, when")
def events(session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[EventOut]:
    return [EventOut(id=event.id, at=audit.iso_utc(event.at), actor=event.actor, action=event.action,
                     subject=event.subject, payload=_payload(event.payload), prev_hash=event.prev_hash,
                     hash=event.hash) for event in audit.recent_events(session, limit)]


def _payload(text: str) -> Any:
    # Shown as stored: a tampered row whose payload is no longer JSON must still be listable.
    try:
        return json.loads(text)
    except ValueError:
        return text
