"""Storing an opt-out from `outbound.opt_out_journal` in the database, exactly as the webhook would.

- a text (`sms`): `outbound.inbound_sms.handle_inbound_sms` with the signed form parameters, so
  the revocation, the internal-list entry, the MessageSid claim and the one confirmation are the
  normal path's; the revocation is dated when the STOP arrived, not when it was applied;
- a call (`call`): the revocation of a key 9 or a spoken opt-out, for the attempt's contact
  (`outbound.conversation.revoke_heard`), dated when it was heard.

`apply_journal` is what the worker's job and the API process run; `store_now` is the webhook's
own attempt, bounded by its caller.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Engine

from outbound import audit, opt_out_journal
from outbound.carrier_event_log import ACTOR, attempt_for, require_aware, storable_params
from outbound.db import session_scope
from outbound.models import Attempt, Contact
from outbound.opt_out_journal import JournaledOptOut

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def store(engine: Engine, record: JournaledOptOut, *, adapter=None, clock: Clock = utc_now) -> str:
    """Store one journaled opt-out and commit; what was done, for the applied line."""
    at = require_aware(clock())
    with session_scope(engine, expire_on_commit=False) as session:
        if record.kind == "sms":
            from outbound.inbound_sms import handle_inbound_sms

            result = handle_inbound_sms(session, storable_params(record.params), at, adapter,
                                        received_at=record.received_at)
            session.commit()
            return f"{result.action}: {result.detail or ''}{' (duplicate)' if result.duplicate else ''}"
        if record.kind == "call":
            return _store_call(session, record, at)
        if record.kind == "inbound-call":
            from outbound.inbound_calls import opt_out_by_keypress, seller_for_number

            seller = seller_for_number(session, record.params.get("To", ""))
            revocation_id = opt_out_by_keypress(session, record.phone, at, call_sid=record.carrier_id, seller=seller,
                                                received_at=record.received_at)
            return f"revoked: revocation#{revocation_id}"
    raise opt_out_journal.JournalError(f"opt-out {record.key}: unknown kind {record.kind!r}")


def _store_call(session, record: JournaledOptOut, at: datetime) -> str:
    from outbound.conversation import reply_from, revoke_heard

    attempt = (session.get(Attempt, record.attempt_id) if record.attempt_id is not None
               else attempt_for(session, record.carrier_id))
    if attempt is not None and attempt.carrier_id == record.carrier_id:
        phone = session.get(Contact, attempt.contact_id).e164
    else:
        # No attempt on file with this CallSid: the number Twilio called (its signed `To`) is
        # the one that pressed 9 or said stop.
        phone = record.phone
    if phone is None:
        # Nothing names a number to revoke: a person must look (the record stays in the journal).
        audit.append(session, actor=ACTOR, action="conversation.opt_out_unmatched", subject=record.key, at=at,
                     payload={"attempt_id": record.attempt_id, "call_sid": record.carrier_id, "heard": record.text})
        session.commit()
        log.error("opt-out %s: no attempt %s and no To number: audited for review", record.key, record.attempt_id)
        return "unmatched: audited for review"
    revocation_id = revoke_heard(session, attempt.id if attempt else None, phone, record.carrier_id, reply_from(record.params),
                                 record.received_at, at)
    return f"revoked: revocation#{revocation_id}"


def store_now(data_dir: Path, engine: Engine, record: JournaledOptOut, *, adapter=None,
              clock: Clock = utc_now) -> str | None:
    """The webhook's own attempt at storing `record`, under the journal's lock; None when
    another process already applied it."""
    return opt_out_journal.apply_one(data_dir, record,
                                     lambda r: store(engine, r, adapter=adapter, clock=clock), clock)


def apply_journal(data_dir: Path, engine: Engine, *, adapter=None, clock: Clock = utc_now) -> int:
    """Store every pending opt-out the database will take now; how many were stored."""
    stored = opt_out_journal.apply_pending(data_dir, lambda r: store(engine, r, adapter=adapter, clock=clock),
                                           clock)
    if stored:
        log.info("opt-out journal: %d pending opt-out(s) stored", stored)
    return stored


# --- what the webhooks journal ----------------------------------------------------------------

def sms_record(params: dict[str, str], at: datetime) -> JournaledOptOut | None:
    """The journal record of an inbound text that is an opt-out (None for any other text, or one
    the normal path refuses or sends for review: no MessageSid, a From that is not a number)."""
    from consent import records
    from outbound.sms_keywords import Intent, classify

    params = storable_params(params)
    message_sid, raw_from = params.get("MessageSid", "").strip(), params.get("From", "").strip()
    body = params.get("Body", "")
    if not message_sid or not raw_from or classify(body).intent is not Intent.OPT_OUT:
        return None
    try:
        phone = records.normalize_phone(raw_from)
    except records.InvalidPhone:
        return None
    return JournaledOptOut(key=f"sms:{message_sid}", kind="sms", phone=phone, channels=CHANNELS,
                           via="sms_stop", received_at=require_aware(at), carrier_id=message_sid,
                           text=body, params=params)


def call_record(attempt_id: int | None, params: dict[str, str], at: datetime,
                turn: int | None) -> JournaledOptOut | None:
    """The journal record of a reply heard on a call that is an opt-out: the reserved key (9)
    or words that read as one, the same readings the conversation applies. None otherwise."""
    from consent import opt_out_words, records
    from outbound.conversation import opt_out_via, reply_from
    from outbound.scripts.model import OPT_OUT_KEY

    params = storable_params(params)
    reply = reply_from(params)
    call_sid = params.get("CallSid", "").strip()
    heard_stop = bool(reply.speech) and opt_out_words.opt_out(reply.speech) is not None
    if not call_sid or not (reply.digits.startswith(OPT_OUT_KEY) or heard_stop):
        return None
    try:
        phone = records.normalize_phone(params.get("To") or params.get("Called") or "")
    except records.InvalidPhone:
        phone = None                   # the attempt names it when the record is applied
    return JournaledOptOut(key=f"call:{call_sid}:turn:{turn if turn is not None else reply.heard()[:100]}",
                           kind="call", phone=phone, channels=CHANNELS, via=opt_out_via(reply).value,
                           received_at=require_aware(at), carrier_id=call_sid, text=reply.heard()[:300],
                           params=params, attempt_id=attempt_id, turn=turn)


def inbound_call_record(params: dict[str, str], at: datetime) -> JournaledOptOut | None:
    """The journal record of a 9 pressed by a caller to our number (None: another key, or a
    caller whose number cannot be read, which the normal path answers as unidentified)."""
    from consent import records
    from outbound.inbound_calls import OPT_OUT_DIGIT

    params = storable_params(params)
    call_sid = params.get("CallSid", "").strip()
    if params.get("Digits", "") != OPT_OUT_DIGIT or not call_sid:
        return None
    try:
        phone = records.normalize_phone(params.get("From", ""))
    except records.InvalidPhone:
        return None
    return JournaledOptOut(key=f"inbound-call:{call_sid}", kind="inbound-call", phone=phone, channels=CHANNELS,
                           via="keypress", received_at=require_aware(at), carrier_id=call_sid,
                           text=f"pressed {OPT_OUT_DIGIT}", params=params)


CHANNELS = ("sms", "voice")
