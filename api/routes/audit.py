"""The audit log for compliance: verify the keyed hash chain and the fact rows it vouches for
(`outbound audit verify`), the head to keep as an anchor (`outbound audit anchor`), and the
latest events (`outbound audit tail`)."""
from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from api.auth import require_roles
from api.database import SessionDep
from outbound import audit, audit_rows

router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[Depends(require_roles("compliance"))])


class BrokenLinkOut(BaseModel):
    event_id: int
    reason: str
    expected_hash: str | None
    found_hash: str | None


class RowProblemOut(BaseModel):
    table: str
    row_id: int
    problem: str = Field(description="edited | unaudited | removed | unknown_table")
    event_id: int | None
    detail: str
    last_row_id: int | None = Field(description="a bulk load's chunk: the problem is among row_id..last_row_id")


class RowCheckOut(BaseModel):
    ok: bool
    rows_checked: int
    tables: dict[str, int]
    problems_total: int
    problems: list[RowProblemOut] = Field(description=f"the first {audit_rows.MAX_LISTED}")


class AnchorCheckOut(BaseModel):
    id: int
    hash: str
    ok: bool | None = Field(description="null: the chain broke before the anchor could be checked")


class VerifyOut(BaseModel):
    ok: bool
    events_checked: int
    last_id: int
    broken: BrokenLinkOut | None
    rows: RowCheckOut | None = Field(description="consent, revocation, business-relationship and DNC "
                                                 "rows against their audit events; null when the chain is broken")
    anchor: AnchorCheckOut | None


class AnchorOut(BaseModel):
    id: int
    hash: str


class EventOut(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    subject: str | None
    payload: Any
    prev_hash: str
    hash: str


@router.get("/verify", summary="Check every link of the chain and every fact row; `ok` is false on any problem")
def verify(session: SessionDep, anchor: Annotated[str | None, Query(
        description="ID:HASH from /v1/audit/anchor: also prove nothing up to that event changed")] = None) -> VerifyOut:
    try:
        parsed = audit.Anchor.parse(anchor) if anchor is not None else None
    except ValueError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    return VerifyOut(**audit.verify(session, anchor=parsed).to_dict())


@router.get("/anchor", summary="The head of the chain (id and hash), to keep outside the system",
            responses={404: {"description": "the audit log is empty"}})
def anchor(session: SessionDep) -> AnchorOut:
    head = audit.head(session)
    if head is None:
        raise HTTPException(status_code=404, detail="the audit log is empty: nothing to anchor yet")
    return AnchorOut(id=head.id, hash=head.hash)


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
