"""The record of carrier events: each (carrier id, event key) is handled once, and its result kept.

A webhook is first *claimed* by inserting its `carrier_events` row (unique on carrier id and
event key, ON CONFLICT DO NOTHING); only the delivery that inserted the row acts on it. The result
of acting is stored in the same row, so a redelivery, whether it comes a second or a day later,
changes nothing and answers exactly what the first delivery answered.

The claim is also the serialisation point: on SQLite the INSERT takes the database's write lock
before the attempt is read, and on PostgreSQL a duplicate INSERT waits for the first delivery's
transaction, then finds the row and does nothing.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select, update
from sqlmodel import Session

from outbound import audit
from outbound.db import insert_ignoring_duplicates
from outbound.models import Attempt, CarrierEvent, Contact

ACTOR = "carrier"          # the audit actor of every change a carrier event causes


class CarrierEventError(ValueError):
    """A webhook that cannot be applied; the message says which parameter and why."""


class UnknownCall(CarrierEventError):
    """No attempt (nor reply we sent) carries this CallSid or MessageSid: nothing was changed."""


class InvalidEvent(CarrierEventError):
    """A parameter is missing or has a value the carrier does not send."""


@dataclass(frozen=True)
class WebhookResult:
    """What handling one carrier event did. A redelivery returns an equal result with
    `duplicate=True` (excluded from equality: it describes the delivery, not the event)."""

    kind: str                          # call-status | amd | sms-status | sms-inbound | gather
    carrier_id: str                    # CallSid or MessageSid
    event_key: str                     # status:ringing, amd:human, sms:inbound, ...
    applied: bool                      # whether it changed an attempt or the consent ledger
    attempt_id: int | None = None
    status: str | None = None          # the attempt's status after the event
    carrier_status: str | None = None  # the attempt's carrier status after the event
    outcome: str | None = None
    intent: str | None = None          # inbound SMS: opt_out | help | start | other
    action: str | None = None          # what was done: revoked, help_sent, resubscribed, ...
    reply_sid: str | None = None       # the one reply text we sent, if any
    detail: str | None = None          # why nothing changed, or what was recorded
    duplicate: bool = field(default=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        # Every field is a str, bool, int or None: no need for asdict's deep copy.
        return {name: getattr(self, name) for name in _STORED_FIELDS}

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> WebhookResult:
        known = {f.name for f in fields(cls)} - {"duplicate"}
        return cls(**{name: value for name, value in stored.items() if name in known}, duplicate=True)

    def with_attempt(self, attempt: Attempt) -> WebhookResult:
        return replace(self, attempt_id=attempt.id, status=attempt.status,
                       carrier_status=attempt.carrier_status, outcome=attempt.outcome)


_STORED_FIELDS = tuple(f.name for f in fields(WebhookResult) if f.name != "duplicate")


# --- parameters -------------------------------------------------------------------------------

def storable_params(params: dict[str, Any]) -> dict[str, str]:
    """The form parameters as text any database can keep: NUL and unpaired surrogates (which
    PostgreSQL and UTF-8 refuse) are replaced, so a hostile body cannot make a STOP unstorable."""
    return {str(name): _storable_text(str(value)) for name, value in params.items()
            if value is not None}


def _storable_text(text: str) -> str:
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def required(params: dict[str, str], name: str) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise InvalidEvent(f"missing {name}")
    return value


def one_of(params: dict[str, str], name: str, allowed: dict[str, Any] | frozenset[str]) -> str:
    value = required(params, name)
    if value not in allowed:
        raise InvalidEvent(f"{name}={value!r} is not one of {', '.join(sorted(allowed))}")
    return value


def optional_one_of(params: dict[str, str], name: str, allowed: dict[str, Any]) -> str | None:
    return one_of(params, name, allowed) if params.get(name, "").strip() else None


def require_aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()}: give the receive instant in UTC")
    return at.astimezone(timezone.utc)


# --- claim, result, replay --------------------------------------------------------------------

def claim_event(session: Session, carrier_id: str, event_key: str, *, attempt_id: int | None,
                params: dict[str, str], at: datetime, result: WebhookResult | None = None) -> bool:
    """Store the event unless it is on file; True when this call stored it (and so must act)."""
    payload = {"params": params, "result": result.as_dict() if result else None}
    return insert_ignoring_duplicates(session, CarrierEvent.__table__, {
        "carrier_id": carrier_id, "event_key": event_key, "attempt_id": attempt_id,
        "received_at": at, "payload": payload})


def save_result(session: Session, result: WebhookResult, params: dict[str, str]) -> None:
    """Keep what handling the event did in its row, for redeliveries to answer the same."""
    session.execute(update(CarrierEvent)
                    .where(CarrierEvent.carrier_id == result.carrier_id,
                           CarrierEvent.event_key == result.event_key)
                    .values(payload={"params": params, "result": result.as_dict()}))


def stored_result(session: Session, carrier_id: str, event_key: str) -> WebhookResult | None:
    """The result of an event already on file (marked duplicate), or None when it is new."""
    payload = session.execute(select(CarrierEvent.payload).where(
        CarrierEvent.carrier_id == carrier_id, CarrierEvent.event_key == event_key)).scalar_one_or_none()
    return result_from_payload(carrier_id, event_key, payload)


def result_from_payload(carrier_id: str, event_key: str, payload: dict | None) -> WebhookResult | None:
    """What a stored event row says its first delivery did (None when there is no row)."""
    if payload is None:
        return None
    if payload.get("result") is None:
        # Claimed by a delivery whose transaction is still open elsewhere; it will act, not us.
        return WebhookResult(kind="", carrier_id=carrier_id, event_key=event_key, applied=False,
                             detail="being handled by an earlier delivery", duplicate=True)
    return WebhookResult.from_stored(payload["result"])


def event_exists(session: Session, carrier_id: str, event_key: str) -> bool:
    return session.execute(select(CarrierEvent.id).where(
        CarrierEvent.carrier_id == carrier_id, CarrierEvent.event_key == event_key)).first() is not None


# --- attempts ---------------------------------------------------------------------------------

def attempt_for(session: Session, carrier_id: str) -> Attempt | None:
    return session.execute(select(Attempt).where(Attempt.carrier_id == carrier_id)).scalar_one_or_none()


def attempt_id_for(session: Session, carrier_id: str) -> int | None:
    """The id alone: enough to refuse an unknown call, cheaper than loading the row twice."""
    return session.execute(select(Attempt.id).where(Attempt.carrier_id == carrier_id)).scalar_one_or_none()


# An attempt whose carrier id a crash kept from being recorded: `sending`, or already handed back
# (the reaper found no record yet: `pending`/`claimed`; or an older `failed`/`unknown`).
ADOPTABLE_STATUSES = frozenset({"sending", "dialing", "pending", "claimed"})
# Until its next webhook; after this the reaper fetches the call (DispatchConfig's default).
ADOPTED_LEASE = timedelta(minutes=30)
ATTEMPT_QUERY_PARAM = "attempt"          # dispatch's callback URLs carry ?attempt=ID


def adopt_by_callback(session: Session, carrier_id: str, params: dict[str, str], at: datetime) -> int | None:
    """The attempt a callback's URL names (`?attempt=ID`, merged into the params), when its
    carrier id was never recorded: the callback proves the call or text exists, so the attempt
    takes the carrier id and is `dialing` again, never sent a second time. None when the URL
    names none, or an attempt that has another carrier id, is settled, or is for another number."""
    raw = str(params.get(ATTEMPT_QUERY_PARAM, "")).strip()
    if not raw.isdigit():
        return None
    attempt = session.execute(select(Attempt).where(Attempt.id == int(raw)).with_for_update()).scalar_one_or_none()
    if attempt is None or attempt.carrier_id is not None:
        return None
    if attempt.status not in ADOPTABLE_STATUSES and not (attempt.status == "failed" and attempt.outcome == "unknown"):
        return None
    to = params.get("To")
    if to and session.get(Contact, attempt.contact_id).e164 != to:
        return None
    before = attempt.status
    attempt.carrier_id, attempt.status, attempt.outcome, attempt.error = carrier_id, "dialing", None, None
    attempt.claimed_by, attempt.lease_until, attempt.updated_at = None, at + ADOPTED_LEASE, at
    session.add(attempt)
    session.flush()
    audit.append(session, actor=ACTOR, action="attempt.carrier_id_from_callback", subject=f"attempt#{attempt.id}",
                 at=at, payload={"carrier_id": carrier_id, "status_before": before})
    return attempt.id


def lock_attempt(session: Session, attempt_id: int) -> Attempt:
    """The attempt re-read under lock (FOR UPDATE on PostgreSQL; on SQLite the claim INSERT
    already holds the write lock), so two events of one call apply one after the other."""
    statement = (select(Attempt).where(Attempt.id == attempt_id).with_for_update()
                 .execution_options(populate_existing=True))
    return session.execute(statement).scalar_one()


def attempt_state(attempt: Attempt) -> dict[str, str | None]:
    return {"status": attempt.status, "carrier_status": attempt.carrier_status,
            "answered_by": attempt.answered_by, "outcome": attempt.outcome, "error": attempt.error}


def audit_attempt_change(session: Session, attempt: Attempt, before: dict[str, str | None], *,
                         event_key: str, at: datetime) -> None:
    audit.append(session, **asdict(attempt_change_event(attempt, before, event_key=event_key, at=at)))


def attempt_change_event(attempt: Attempt, before: dict[str, str | None], *, event_key: str,
                         at: datetime) -> audit.NewEvent:
    after = attempt_state(attempt)
    changed = {name: {"from": before[name], "to": after[name]}
               for name in after if before[name] != after[name]}
    return audit.NewEvent(actor=ACTOR, action="attempt.carrier_event", subject=f"attempt#{attempt.id}", at=at,
                          payload={"carrier_id": attempt.carrier_id, "event": event_key, "changed": changed})
