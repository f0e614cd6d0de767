"""A START from a number on the internal do-not-call list: a request for compliance, not a switch.

An SMS STOP also puts the number on the internal list (47 CFR 64.1200(d)), and only a compliance
user, with a reason, takes it off (`consent.dnc.remove_internal`). A later START therefore cannot
resume texts by itself: the internal list blocks every text whatever consent is on file. So the
START is recorded as a request (the audit event `sms.resubscribe_requested`, beside the re-opt-in
consent it may have recorded), the compliance DNC view shows it with the entry, and the reply
says that texts resume once the request is reviewed. Nothing here removes the entry.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import select
from sqlmodel import Session

from outbound import audit
from outbound.carrier_event_log import ACTOR
from outbound.models import AuditEvent

REQUESTED = "sms.resubscribe_requested"


def record_request(session: Session, phone: str, entry: dict, *, message_sid: str, outcome: str,
                   detail: str | None, at: datetime) -> None:
    """Audit a START received while `entry` (consent.dnc.internal_entry) keeps the number listed."""
    audit.append(session, actor=ACTOR, action=REQUESTED, subject=phone, at=at, payload={
        "message_sid": message_sid, "internal_entry_id": entry["id"], "outcome": outcome, "detail": detail})


def latest_request(session: Session, phone: str, since: datetime) -> tuple[datetime, str] | None:
    """(when, MessageSid) of the latest resubscribe request for `phone` made at or after `since`."""
    found = session.execute(select(AuditEvent.at, AuditEvent.payload).where(
        AuditEvent.action == REQUESTED, AuditEvent.subject == phone, AuditEvent.at >= since)
        .order_by(AuditEvent.id.desc()).limit(1)).one_or_none()
    if found is None:
        return None
    return found.at, json.loads(found.payload).get("message_sid", "")


def entry_with_requests(session: Session, phone: str, entry: dict | None) -> dict | None:
    """The internal entry as compliance sees it: when a START came while it stood, with
    `resubscribe_requested_at` and a `detail` saying what the request waits for (the entry as it
    is otherwise, so its keys stay those clients know)."""
    if entry is None:
        return None
    request = latest_request(session, phone, datetime.fromisoformat(entry["added_at"].replace("Z", "+00:00")))
    if request is None:
        return entry
    when = _iso(request[0])
    return {**entry, "resubscribe_requested_at": when,
            "detail": f"resubscribe requested at {when} by text {request[1]}: texts stay blocked until a "
                      "compliance user removes this entry, with a reason"}


def _iso(instant: datetime) -> str:
    return instant.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
