"""REST routes of the consent ledger. Thin: validation is the ledger's pydantic models, the work
is `consent.records`, and this module only maps HTTP onto them.

Every route needs the compliance role (`api.auth`); the actor written to the audit log is the
authenticated user's name.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, HTTPException, Query, Response, UploadFile, status

from api.auth import ComplianceUser, require_roles
from api.database import NowDep, SessionDep
from api.upload_names import base_name
from consent import records
from api.ascii_json import AsciiJSONResponse
from consent.ledger_io import (
    BusinessRelationshipIn, ConsentIn, RevocationIn, load_csv_bytes, load_json_bytes,
)
from consent.types import Channel, Purpose
from outbound import audit

router = APIRouter(prefix="/v1", tags=["consent"], dependencies=[Depends(require_roles("compliance"))])


def get_audit() -> records.Audit:
    return audit.append


def get_actor(user: ComplianceUser) -> str:
    return user.name


AuditDep = Annotated[records.Audit, Depends(get_audit)]
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
                purpose: Annotated[Purpose | None, Query()] = None,
                seller: Annotated[str | None, Query(max_length=500, description="only this seller's consents: "
                                                    "what its campaigns rely on")] = None) -> dict[str, Any]:
    """The whole history of a phone in time order, each consent's seller, evidence and standing now
    (active, not_yet_granted, expired, revoked, superseded), and the record the gate would rely on now."""
    with _ledger_errors_as_422():
        view = records.ledger_view(session, phone, now,
                                   channels=[channel] if channel else tuple(Channel),
                                   purposes=[purpose] if purpose else tuple(Purpose), seller=seller)
    return view.as_dict()


# A ledger file is parsed whole (as `outbound consent import` does); bigger files go through the CLI.
MAX_LEDGER_UPLOAD_BYTES = 20 * 1024 * 1024


@router.post("/consent/import", response_class=AsciiJSONResponse,
             summary="Load a ledger file (CSV, JSON array or JSON Lines); bad rows are reported, good rows load",
             responses={413: {"description": f"larger than {MAX_LEDGER_UPLOAD_BYTES // (1024 * 1024)} MB"}})
def import_ledger(file: Annotated[UploadFile, File(description="CSV, JSON array or JSON Lines")],
                  session: SessionDep, actor: ActorDep, audit_append: AuditDep, now: NowDep) -> dict[str, Any]:
    data = file.file.read(MAX_LEDGER_UPLOAD_BYTES + 1)
    if len(data) > MAX_LEDGER_UPLOAD_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                            detail=f"the file is larger than {MAX_LEDGER_UPLOAD_BYTES // (1024 * 1024)} MB; "
                                   "load it with `outbound consent import`")
    name = base_name(file.filename, "upload")
    is_json = name.lower().endswith((".json", ".jsonl", ".ndjson")) or (
        not name.lower().endswith(".csv") and data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"[", b"{"))
    loaded = load_json_bytes(data) if is_json else load_csv_bytes(data)
    summary = records.import_loaded(session, loaded, source=f"api:{name}", actor=actor, at=now,
                                    audit=audit_append)
    session.commit()
    return summary.as_dict()
