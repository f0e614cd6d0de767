"""REST routes of the consent ledger. Thin: validation is the ledger's pydantic models, the work
is `consent.records`, and this module only maps HTTP onto them.

No authentication yet (a later issue adds roles): the actor written to the audit log is the
`X-Actor` header, `api` when absent.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response, status
from sqlmodel import Session

from consent import records
from consent.ledger_io import BusinessRelationshipIn, ConsentIn, RevocationIn
from consent.types import Channel, Purpose
from outbound import audit
from outbound.db import get_engine, session_scope

router = APIRouter(prefix="/v1", tags=["consent"])


def get_session() -> Iterator[Session]:
    with session_scope(get_engine()) as session:
        yield session


def get_audit() -> records.Audit:
    return audit.append


def get_now() -> datetime:
    return datetime.now(timezone.utc)


def get_actor(x_actor: Annotated[str | None, Header(max_length=200)] = None) -> str:
    return (x_actor or "").strip() or "api"


SessionDep = Annotated[Session, Depends(get_session)]
AuditDep = Annotated[records.Audit, Depends(get_audit)]
NowDep = Annotated[datetime, Depends(get_now)]
ActorDep = Annotated[str, Depends(get_actor)]


@contextmanager
def _ledger_errors_as_422() -> Iterator[None]:
    """A request the ledger refuses is the client's to fix: 422 with the ledger's message."""
    try:
        yield
    except records.LedgerError as error:
        raise HTTPException(422, detail=str(error)) from None


def _created_or_found(response: Response, created: bool) -> None:
    # Re-sending a record already on file stores nothing: 200 with the stored row, not 201.
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK


@router.post("/consent", status_code=status.HTTP_201_CREATED)
def post_consent(body: ConsentIn, response: Response, session: SessionDep, actor: ActorDep,
                 audit_append: AuditDep, now: NowDep) -> dict[str, Any]:
    with _ledger_errors_as_422():
        stored = records.add_consent(session, body, actor=actor, at=now, audit=audit_append)
    session.commit()                 # stored before the client hears 201
    _created_or_found(response, stored.created)
    return records.consent_as_dict(stored.row)


@router.post("/revocations", status_code=status.HTTP_201_CREATED)
def post_revocation(body: RevocationIn, response: Response, session: SessionDep, actor: ActorDep,
                    audit_append: AuditDep, now: NowDep) -> dict[str, Any]:
    # records.revoke commits the opt-out itself before returning.
    with _ledger_errors_as_422():
        stored = records.revoke(session, body.phone, body.channels, body.via, body.received_at,
                                actor=actor, at=now, audit=audit_append, note=body.note)
    _created_or_found(response, stored.created)
    return records.revocation_as_dict(stored.row)


@router.post("/business-relationships", status_code=status.HTTP_201_CREATED)
def post_business_relationship(body: BusinessRelationshipIn, response: Response, session: SessionDep,
                               actor: ActorDep, audit_append: AuditDep, now: NowDep) -> dict[str, Any]:
    with _ledger_errors_as_422():
        stored = records.add_business_relationship(session, body, actor=actor, at=now,
                                                   audit=audit_append)
    session.commit()
    _created_or_found(response, stored.created)
    return records.business_relationship_as_dict(stored.row)


@router.get("/consent/{phone}")
def get_consent(phone: str, session: SessionDep, now: NowDep,
                channel: Annotated[Channel | None, Query()] = None,
                purpose: Annotated[Purpose | None, Query()] = None) -> dict[str, Any]:
    """The whole history of a phone in time order, and the record the gate would rely on now."""
    with _ledger_errors_as_422():
        view = records.ledger_view(session, phone, now,
                                   channels=[channel] if channel else tuple(Channel),
                                   purposes=[purpose] if purpose else tuple(Purpose))
    return view.as_dict()
