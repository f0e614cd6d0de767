"""Contacts and attempts, read-only: what a list import stored and what became of each attempt.

A manager reads those of the campaigns they own, compliance every campaign's; another
manager's contact or attempt answers 404 like a missing one.
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel
from sqlalchemy import select
from sqlmodel import Session

from api.auth import CampaignReader
from api.database import SessionDep
from api.scoping import owner_scope, visible_campaign
from outbound.audit import iso_utc
from outbound.models import Attempt, Campaign, Contact
from outbound.users import CurrentUser

router = APIRouter(prefix="/v1", tags=["contacts"])
Id32 = Annotated[int, Path(ge=1, le=2 ** 31 - 1)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
AttemptStatus = Literal["pending", "claimed", "sending", "dialing", "completed", "failed", "blocked", "cancelled"]
NOT_FOUND = {404: {"description": "not found (or another manager's)"}}


class ContactOut(BaseModel):
    id: int
    campaign_id: int
    import_id: int | None
    e164: str
    first_name: str | None
    last_name: str | None
    email: str | None
    zip: str | None
    state: str | None
    line_type: str
    timezones: list[str]
    states: list[str]
    attributes: dict[str, Any]
    source_line: int | None
    created_at: str | None


class AttemptOut(BaseModel):
    id: int
    campaign_id: int
    contact_id: int
    channel: str
    status: str
    attempt_no: int
    due_at: str | None
    carrier_id: str | None
    carrier_status: str | None
    answered_by: str | None
    outcome: str | None
    error: str | None
    decision_id: str | None
    dispatched_at: str | None
    last_event_at: str | None
    updated_at: str | None


def _iso(at: datetime | None) -> str | None:
    return iso_utc(at) if at else None


def contact_out(contact: Contact) -> ContactOut:
    return ContactOut(id=contact.id, campaign_id=contact.campaign_id, import_id=contact.import_id, e164=contact.e164,
                      first_name=contact.first_name, last_name=contact.last_name, email=contact.email,
                      zip=contact.zip, state=contact.state, line_type=contact.line_type,
                      timezones=contact.timezones.split(), states=contact.states.split(),
                      attributes=contact.attributes or {}, source_line=contact.source_line,
                      created_at=_iso(contact.created_at))


def attempt_out(attempt: Attempt) -> AttemptOut:
    return AttemptOut(id=attempt.id, campaign_id=attempt.campaign_id, contact_id=attempt.contact_id,
                      channel=attempt.channel, status=attempt.status, attempt_no=attempt.attempt_no,
                      due_at=_iso(attempt.due_at), carrier_id=attempt.carrier_id,
                      carrier_status=attempt.carrier_status, answered_by=attempt.answered_by,
                      outcome=attempt.outcome, error=attempt.error, decision_id=attempt.decision_id,
                      dispatched_at=_iso(attempt.dispatched_at), last_event_at=_iso(attempt.last_event_at),
                      updated_at=_iso(attempt.updated_at))


def _scoped(statement, user: CurrentUser, campaign_column):
    owner = owner_scope(user)
    if owner is None:
        return statement
    return statement.where(campaign_column.in_(select(Campaign.id).where(Campaign.owner_id == owner)))


@router.get("/campaigns/{campaign_id}/contacts", responses=NOT_FOUND, summary="A campaign's contacts, in id order")
def list_contacts(campaign_id: Id32, session: SessionDep, user: CampaignReader, limit: Limit = 100,
                  offset: Offset = 0) -> list[ContactOut]:
    visible_campaign(session, user, campaign_id)
    statement = (select(Contact).where(Contact.campaign_id == campaign_id).order_by(Contact.id)
                 .limit(limit).offset(offset))
    return [contact_out(contact) for contact in session.scalars(statement)]


@router.get("/contacts/{contact_id}", responses=NOT_FOUND, summary="One contact")
def get_contact(contact_id: Id32, session: SessionDep, user: CampaignReader) -> ContactOut:
    return contact_out(_one(session, user, Contact, contact_id, "contact"))


@router.get("/attempts", summary="Attempts, newest due first, filtered by campaign, status, contact and due time")
def list_attempts(session: SessionDep, user: CampaignReader,
                  campaign_id: Annotated[int | None, Query(ge=1, le=2 ** 31 - 1)] = None,
                  contact_id: Annotated[int | None, Query(ge=1, le=2 ** 31 - 1)] = None,
                  status_: Annotated[AttemptStatus | None, Query(alias="status")] = None,
                  due_since: Annotated[datetime | None, Query(description="ISO 8601 with zone")] = None,
                  due_until: Annotated[datetime | None, Query(description="ISO 8601 with zone")] = None,
                  limit: Limit = 100, offset: Offset = 0) -> list[AttemptOut]:
    for name, value in (("due_since", due_since), ("due_until", due_until)):
        if value is not None and value.tzinfo is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{name}: give a time zone (e.g. Z)")
    statement = _scoped(select(Attempt), user, Attempt.campaign_id)
    for column, value in ((Attempt.campaign_id, campaign_id), (Attempt.contact_id, contact_id),
                          (Attempt.status, status_)):
        if value is not None:
            statement = statement.where(column == value)
    if due_since is not None:
        statement = statement.where(Attempt.due_at >= due_since)
    if due_until is not None:
        statement = statement.where(Attempt.due_at < due_until)
    statement = statement.order_by(Attempt.due_at.desc(), Attempt.id.desc()).limit(limit).offset(offset)
    return [attempt_out(attempt) for attempt in session.scalars(statement)]


@router.get("/attempts/{attempt_id}", responses=NOT_FOUND, summary="One attempt")
def get_attempt(attempt_id: Id32, session: SessionDep, user: CampaignReader) -> AttemptOut:
    return attempt_out(_one(session, user, Attempt, attempt_id, "attempt"))


def _one(session: Session, user: CurrentUser, table, row_id: int, what: str):
    row = session.get(table, row_id)
    if row is None or owner_scope(user) is not None and not _owned(session, user, row.campaign_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no {what} with id {row_id}")
    return row


def _owned(session: Session, user: CurrentUser, campaign_id: int) -> bool:
    campaign = session.get(Campaign, campaign_id)
    return campaign is not None and campaign.owner_id == owner_scope(user)
