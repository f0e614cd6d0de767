"""Inbound texts: opt-outs first, then at most one reply per inbound message.

Order of an opt-out (47 CFR 64.1200(a)(10), (a)(12)):

1. the revocation is stored and COMMITTED (`consent.records.revoke`), before anything else, for
   voice and SMS (revoke-all, the conservative reading while its scope is unsettled);
2. the inbound MessageSid is claimed in `carrier_events` and committed: the claim is the right to
   send the one confirmation, so a redelivered STOP, or two racing deliveries, send it once;
3. the confirmation goes out through the adapter and is recorded (its own MessageSid, so its
   delivery statuses are accepted) with an audit event.

A crash between 2 and 3 loses the confirmation rather than risking a second one: the rule allows
one confirmation, and requires none.

Before any of this, the webhook has put the opt-out in `outbound.opt_out_journal`: when the
database cannot take it now, the same steps run later from the journal (`received_at` the
instant it arrived), and the confirmation goes out then.

Why the adapter and not a TwiML <Message> answer: the reply then has a MessageSid we store and
audit, its delivery status comes back like any other message, and the simulator (which calls the
same code without HTTP) sends it the same way. The webhook answers an empty <Response/>.

Carrier note: Twilio's default opt-out handling on long codes answers STOP/HELP/START itself and
then refuses texts to that recipient (error 21610). Deployments either turn that reply off
(Advanced Opt-Out) or accept that our confirmation is refused; the refusal is recorded, so in
both cases one confirmation reaches the consumer.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import case, select
from sqlmodel import Session

from consent import dnc, records
from consent.ledger_io import ConsentIn, RevocationVia
from consent.tables import ConsentRecord, Revocation
from consent.types import Channel
from outbound import audit, resubscribe_requests
from outbound.carrier_event_log import (
    ACTOR, WebhookResult, claim_event, required, save_result, stored_result,
)
from outbound.models import Campaign, Contact
from outbound.settings import get_settings
from outbound.sms_keywords import (
    Classification, Intent, already_subscribed_reply, cannot_resubscribe_reply, classify,
    help_reply, opt_out_confirmation, resubscribe_requested_reply, resubscribed_reply,
)
from telephony.adapter import CarrierError, SmsRequest

INBOUND_KEY = "sms:inbound"
SENT_KEY = "sms:sent"            # a reply we sent, under its own MessageSid
SMS_STATUS_PATH = "/v1/twilio/sms-status"


@dataclass(frozen=True)
class SmsProgram:
    """Who the consumer is talking to: named in every reply (CTIA: brand or program name)."""

    brand: str
    contact: str                 # where HELP sends people
    sender: str | None           # the number replies are sent from


def handle_inbound_sms(session: Session, params: dict[str, str], at: datetime, adapter, *,
                       received_at: datetime | None = None) -> WebhookResult:
    """Handle one inbound text recorded at `at`. `received_at` (default `at`): when the carrier
    delivered it, earlier for an opt-out applied from `outbound.opt_out_journal`."""
    message_sid = required(params, "MessageSid")
    raw_from = required(params, "From")
    previous = stored_result(session, message_sid, INBOUND_KEY)
    if previous is not None:
        return previous
    verdict = classify(params.get("Body", ""))
    base = WebhookResult(kind="sms-inbound", carrier_id=message_sid, event_key=INBOUND_KEY,
                         applied=False, intent=verdict.intent.value)
    try:
        phone = records.normalize_phone(raw_from)
    except records.InvalidPhone:
        return _store_for_review(session, base, params, at, raw_from,
                                 f"From {raw_from!r} is not a NANP number: a person must act on it")
    program = sms_program(session, phone, params.get("To"))
    if verdict.intent is Intent.OPT_OUT:
        return _opt_out(session, base, verdict, phone, program, params, at, adapter, received_at or at)
    if verdict.intent is Intent.OTHER:
        return _store_for_review(session, base, params, at, phone, "stored for review")
    if not claim_event(session, message_sid, INBOUND_KEY, attempt_id=None, params=params, at=at,
                       result=replace(base, action="claimed")):
        return stored_result(session, message_sid, INBOUND_KEY)
    if verdict.intent is Intent.HELP:
        result, text = replace(base, action="help_sent"), help_reply(program.brand, program.contact)
    else:
        result, text = _resubscribe(session, base, phone, program, message_sid, at)
    save_result(session, result, params)
    session.commit()                   # the claim and any re-opt-in are stored before the reply
    return _send_reply(session, adapter, result, params, phone, program, text, at)


# --- opt-out ----------------------------------------------------------------------------------

def _opt_out(session: Session, base: WebhookResult, verdict: Classification, phone: str,
             program: SmsProgram, params: dict[str, str], at: datetime, adapter,
             received_at: datetime) -> WebhookResult:
    body = params.get("Body", "")
    stored = records.revoke(session, phone, {Channel.VOICE, Channel.SMS}, RevocationVia.SMS_STOP, received_at,
                            actor=ACTOR, at=at, audit=audit.append,
                            note=f"sms {base.carrier_id}: {body[:300]!r} ({verdict.matched})")
    # revoke() has committed: the opt-out is on disk before any claim or reply.
    result = replace(base, applied=True, action="revoked",
                     detail=f"revocation#{stored.row.id} ({verdict.matched})")
    if not claim_event(session, base.carrier_id, INBOUND_KEY, attempt_id=None, params=params, at=at,
                       result=result):
        session.commit()
        return stored_result(session, base.carrier_id, INBOUND_KEY)
    session.commit()
    return _send_reply(session, adapter, result, params, phone, program,
                       opt_out_confirmation(program.brand), at)


# --- re-subscribe -----------------------------------------------------------------------------

def _resubscribe(session: Session, base: WebhookResult, phone: str, program: SmsProgram,
                 message_sid: str, at: datetime) -> tuple[WebhookResult, str]:
    """The re-opt-in, told truthfully: while the number is on the internal do-not-call list (a
    STOP put it there), texts stay blocked whatever consent is on file, and only a compliance
    user removes the entry. Then the START is a request for review (outbound.resubscribe_requests)
    and the reply says so; the entry stays."""
    result, text = _reopt_in(session, base, phone, program, message_sid, at)
    entry = dnc.internal_entry(session, phone)
    if entry is None or result.action == "no_consent":
        return result, text         # nothing listed; or nothing a review could resume
    resubscribe_requests.record_request(session, phone, entry, message_sid=message_sid, outcome=result.action,
                                        detail=result.detail, at=at)
    held = (f"on the internal do-not-call list (entry#{entry['id']}): texts resume once a compliance "
            "user removes it; request recorded")
    return (replace(result, action="resubscribe_requested", detail=_join(result.detail, held)),
            resubscribe_requested_reply(program.brand))


def _reopt_in(session: Session, base: WebhookResult, phone: str, program: SmsProgram,
              message_sid: str, at: datetime) -> tuple[WebhookResult, str]:
    """Re-opt-in only where an SMS consent exists and a text opt-out is what stopped it.

    The ledger revokes a consent by a revocation received after its grant, and never edits rows,
    so a re-opt-in is a NEW consent record for SMS only, granted now, with the revoked record's
    kind, purposes, seller, brand and expiry, and evidence naming the START message and the
    record it reinstates. Calls stay revoked: START is an answer about texts. A consent stopped
    by other means (an agent, an e-mail, a spoken opt-out) is not reinstated by a text.
    """
    live = _live_sms_consents(session, phone, at)
    if not live:
        return (replace(base, action="no_consent", detail="no SMS consent on file: nothing recorded"),
                cannot_resubscribe_reply(program.brand, program.contact))
    revocations = list(session.scalars(select(Revocation).where(Revocation.phone == phone,
                                                                Revocation.recorded_at <= at)))
    stopped = [r for r in live if _stopping_revocation(r, revocations, at) is not None]
    by_text = [r for r in stopped if _stopping_revocation(r, revocations, at).via == RevocationVia.SMS_STOP]
    if by_text:
        ids = [_reinstate(session, record, message_sid, at) for record in _newest_per_scope(by_text)]
        return (replace(base, applied=True, action="resubscribed",
                        detail="re-opt-in " + ", ".join(f"consent#{i}" for i in ids)),
                resubscribed_reply(program.brand))
    if len(stopped) < len(live):
        return (replace(base, action="already_subscribed", detail="SMS consent in force: nothing recorded"),
                already_subscribed_reply(program.brand))
    return (replace(base, action="no_consent",
                    detail="SMS consent was revoked other than by text: nothing recorded"),
            cannot_resubscribe_reply(program.brand, program.contact))


def _live_sms_consents(session: Session, phone: str, at: datetime) -> list[ConsentRecord]:
    rows = session.scalars(select(ConsentRecord).where(ConsentRecord.phone == phone,
                                                       ConsentRecord.recorded_at <= at))
    return [record for record in records.current_records(rows)
            if Channel.SMS.value in record.channels.split() and record.granted_at <= at
            and (record.expires_at is None or record.expires_at > at)]


def _stopping_revocation(record: ConsentRecord, revocations: list[Revocation], at: datetime) -> Revocation | None:
    """The latest SMS revocation received at or after the grant (the ledger's revocation rule)."""
    hits = [r for r in revocations if Channel.SMS.value in r.channels.split()
            and record.granted_at <= r.received_at <= at]
    return max(hits, key=lambda r: (r.received_at, r.id), default=None)


def _newest_per_scope(stopped: list[ConsentRecord]) -> list[ConsentRecord]:
    # One re-opt-in per (seller, purposes): an earlier re-opt-in and the record it reinstated
    # would otherwise both be reinstated into the same SMS scope.
    newest: dict[tuple, ConsentRecord] = {}
    for record in stopped:
        key = (record.seller, record.purposes)
        if key not in newest or (record.granted_at, record.id) > (newest[key].granted_at, newest[key].id):
            newest[key] = record
    return sorted(newest.values(), key=lambda record: record.id)


def _reinstate(session: Session, record: ConsentRecord, message_sid: str, at: datetime) -> int:
    consent_in = ConsentIn(
        phone=record.phone, kind=record.kind, channels=[Channel.SMS], purposes=record.purposes.split(),
        seller=record.seller, brand=record.brand, granted_at=at, expires_at=record.expires_at,
        evidence={"source": f"sms START reply {message_sid} reinstating consent#{record.id}"})
    return records.add_consent(session, consent_in, actor=ACTOR, at=at, audit=audit.append).row.id


# --- everything else --------------------------------------------------------------------------

def _store_for_review(session: Session, base: WebhookResult, params: dict[str, str], at: datetime,
                      subject: str, detail: str) -> WebhookResult:
    result = replace(base, action="stored_for_review", detail=detail)
    if not claim_event(session, base.carrier_id, INBOUND_KEY, attempt_id=None, params=params, at=at,
                       result=result):
        return stored_result(session, base.carrier_id, INBOUND_KEY)
    audit.append(session, actor=ACTOR, action="sms.review_needed", subject=subject, at=at,
                 payload={"message_sid": base.carrier_id, "intent": base.intent, "detail": detail})
    return result


# --- the one reply ----------------------------------------------------------------------------

def _send_reply(session: Session, adapter, result: WebhookResult, params: dict[str, str], phone: str,
                program: SmsProgram, text: str, at: datetime) -> WebhookResult:
    """Send the reply once (the caller holds the committed claim) and record what happened."""
    reply_sid, failure = _deliver(adapter, phone, program, text)
    if reply_sid is not None:
        claim_event(session, reply_sid, SENT_KEY, attempt_id=None, at=at,
                    params={"in_reply_to": result.carrier_id, "To": phone, "Body": text})
        audit.append(session, actor=ACTOR, action="sms.reply_sent", subject=phone, at=at,
                     payload={"in_reply_to": result.carrier_id, "reply_sid": reply_sid, "reply": result.action})
        result = replace(result, reply_sid=reply_sid)
    else:
        audit.append(session, actor=ACTOR, action="sms.reply_failed", subject=phone, at=at,
                     payload={"in_reply_to": result.carrier_id, "reply": result.action, "error": failure})
        result = replace(result, detail=_join(result.detail, f"reply not sent: {failure}"))
    save_result(session, result, params)
    return result


def _deliver(adapter, phone: str, program: SmsProgram, text: str) -> tuple[str | None, str | None]:
    if adapter is None:
        return None, "no carrier adapter configured"
    if not program.sender:
        return None, "no sender number: the inbound text had no To and no campaign caller ID"
    try:
        sent = adapter.send_sms(SmsRequest(to=phone, from_=program.sender, body=text,
                                           status_callback=_status_callback_url()))
    except CarrierError as error:
        return None, f"carrier refused the reply: {error}"
    except ValueError as error:        # the adapter's own check: e.g. a short code is not E.164
        return None, f"reply not sendable: {error}"
    return sent.sid, None


def _status_callback_url() -> str:
    public_url = get_settings().public_url
    return f"{public_url.rstrip('/')}{SMS_STATUS_PATH}" if public_url else ""


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second


# --- the program a reply names ----------------------------------------------------------------

def sms_program(session: Session, phone: str, sender: str | None) -> SmsProgram:
    """Brand, help contact and sending number for replies to `phone`.

    Brand: the name of the campaign that has this phone, preferring the campaign whose caller ID
    received the text; else the brand of the phone's latest consent record; else our number.
    Contact: the campaign's caller ID, else our number.
    """
    campaign = session.execute(
        select(Campaign).join(Contact, Contact.campaign_id == Campaign.id)
        .where(Contact.e164 == phone)
        .order_by(case((Campaign.caller_id == (sender or ""), 0), else_=1), Contact.id.desc())
        .limit(1)).scalar_one_or_none()
    sender = sender or (campaign.caller_id if campaign else None)
    if campaign is not None:
        return SmsProgram(brand=campaign.name, contact=campaign.caller_id or sender or "us", sender=sender)
    brand = session.execute(select(ConsentRecord.brand).where(
        ConsentRecord.phone == phone, ConsentRecord.brand.is_not(None))
        .order_by(ConsentRecord.granted_at.desc()).limit(1)).scalar_one_or_none()
    return SmsProgram(brand=brand or sender or "this sender", contact=sender or "us", sender=sender)

