"""Carrier events into the database: the ONE code path for every webhook the carrier sends.

The HTTP routes (`api/routes/webhooks.py`, after checking Twilio's signature) and the simulator
adapter (which delivers Twilio-shaped form parameters) both call `handle_webhook`, so a simulated
campaign exercises exactly the code a real one does.

Guarantees, whatever order and however often the carrier delivers:

- **Once.** Each (CallSid/MessageSid, event key) is acted on once (`carrier_event_log`); a
  redelivery changes nothing and returns the first delivery's result.
- **Known calls only.** An event for a CallSid/MessageSid we never placed is refused with
  `UnknownCall` before anything is written.
- **Final states stay final.** Carrier statuses have a precedence (queued < initiated < ringing <
  in-progress < final); a late `ringing` never overwrites `completed`. Between two final statuses
  the higher SequenceNumber wins; without one, the first stands.
- **Outcome, then retry.** completed + human → answered, completed + machine → voicemail, busy,
  no-answer, failed, canceled. A retryable outcome (voicemail, busy, no-answer, failed) schedules
  the next attempt once per call, through the campaign's retry policy (and the gate again).
- **Audited.** Every change of an attempt is an audit event with actor `carrier`.

`handle_webhook` commits before it returns: a carrier event is acknowledged only once stored.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from consent import opt_out_words, records
from consent.ledger_io import RevocationVia
from consent.types import Channel
from outbound import audit
from outbound.carrier_event_log import (
    ACTOR, InvalidEvent, UnknownCall, WebhookResult, adopt_by_callback, attempt_for, attempt_state, claim_event,
    event_exists,
    one_of, optional_one_of, require_aware, required, storable_params, stored_result,
)
from outbound.carrier_event_recorders import BatchRecorder, NotBatchable, SingleRecorder
from outbound.inbound_sms import SENT_KEY, handle_inbound_sms
from outbound.models import Attempt, Contact

__all__ = ["handle_webhook", "handle_webhook_batch", "PendingEvent", "BATCHABLE_KINDS", "NotBatchable", "WebhookResult", "UnknownCall", "InvalidEvent", "KINDS", "RetryHook"]

log = logging.getLogger(__name__)

RetryHook = Callable[[Session, Attempt, datetime], Any]

# Precedence of call statuses: an event applies only if it ranks above the status on file.
CALL_STATUS_RANK = {"queued": 0, "initiated": 1, "ringing": 2, "in-progress": 3,
                    "completed": 4, "busy": 4, "no-answer": 4, "failed": 4, "canceled": 4}
SMS_STATUS_RANK = {"accepted": 0, "scheduled": 0, "queued": 0, "sending": 1, "sent": 2,
                   "delivered": 3, "undelivered": 3, "failed": 3, "canceled": 3, "read": 4}
FINAL_RANK = {"call": 4, "sms": 3}

# Answering-machine results, least to most informative: a final "machine_end_*" refines
# "machine_start"; "unknown" never replaces a real answer.
AMD_RANK = {"unknown": 0, "human": 1, "fax": 1, "machine_start": 1,
            "machine_end_beep": 2, "machine_end_silence": 2, "machine_end_other": 2}

# Final carrier status -> (attempt status, outcome). `completed` calls take their outcome from AMD.
CALL_FINAL = {"busy": ("completed", "busy"), "no-answer": ("completed", "no-answer"),
              "failed": ("failed", "failed"), "canceled": ("cancelled", "canceled")}
# An undelivered text ends as outcome `failed` (its error keeps the carrier's word and code), the
# outcome campaigns' retry policies name (outbound.campaigns.RetryOutcome) and the reaper uses.
SMS_FINAL = {"delivered": ("completed", "delivered"), "read": ("completed", "delivered"),
             "undelivered": ("failed", "failed"), "failed": ("failed", "failed"),
             "canceled": ("cancelled", "canceled")}
RETRYABLE_OUTCOMES = frozenset({"voicemail", "busy", "no-answer", "failed"})
# Attempt statuses a non-final carrier event may not move back to "dialing".
TERMINAL_ATTEMPT_STATUSES = frozenset({"completed", "failed", "blocked", "cancelled"})
RETRY_KEY = "retry"


@dataclass(frozen=True)
class _Context:
    adapter: Any
    retry_hook: RetryHook | None
    recorder: SingleRecorder | BatchRecorder


def handle_webhook(session: Session, kind: str, params: dict, at: datetime, *, adapter=None,
                   schedule_retry: RetryHook | None = None) -> WebhookResult:
    """Apply one carrier event received at `at` and commit.

    `kind`: call-status | amd | sms-status | sms-inbound | gather. `params`: the form parameters
    as Twilio sends them. `adapter` sends the one reply an inbound text may get (None: the reply is
    recorded as not sent). `schedule_retry(session, attempt, now)` defaults to
    `scheduler.retries.schedule_retry`.

    Raises UnknownCall (no such CallSid/MessageSid) or InvalidEvent (a missing or impossible
    parameter), in both cases having written nothing.
    """
    handler = _HANDLERS.get(kind)
    if handler is None:
        raise InvalidEvent(f"unknown webhook kind {kind!r}: expected one of {', '.join(KINDS)}")
    at = require_aware(at)
    result = handler(session, storable_params(params), at,
                     _Context(adapter, schedule_retry, SingleRecorder(session)))
    session.commit()
    return result


# Kinds whose handling is database work only (no carrier request inside), so several can share
# one transaction: an inbound text may send a reply, which must follow its own commit.
BATCHABLE_KINDS = frozenset({"call-status", "amd", "sms-status"})


@dataclass(frozen=True)
class PendingEvent:
    kind: str
    params: dict
    at: datetime


def handle_webhook_batch(session: Session, events: list[PendingEvent], *,
                         schedule_retry: RetryHook | None = None) -> list[WebhookResult]:
    """Apply several events of BATCHABLE_KINDS, in order, in ONE transaction, and commit once.

    One commit means one disk flush for the lot (the cost that bounds single-event handling),
    and each event is still acknowledged only once stored. All or nothing: if any event raises
    (UnknownCall, InvalidEvent or anything else), nothing is kept and the error propagates; the
    caller then handles the events one by one, each with its own result or error (NotBatchable:
    an event this path does not serve, such as an unknown carrier id)."""
    for event in events:
        if event.kind not in BATCHABLE_KINDS:
            raise NotBatchable(f"{event.kind} events are handled one at a time, not in a batch")
    recorder = BatchRecorder(session, [_carrier_id(event.params) for event in events])
    context = _Context(None, schedule_retry, recorder)
    results = [_HANDLERS[event.kind](session, storable_params(event.params), require_aware(event.at), context)
               for event in events]
    recorder.write_pending()
    session.commit()
    return results


def _carrier_id(params: dict) -> str:
    return str(params.get("CallSid") or params.get("MessageSid") or "")


# --- call status ------------------------------------------------------------------------------

def _call_status(session: Session, params: dict[str, str], at: datetime, context: _Context) -> WebhookResult:
    call_sid = required(params, "CallSid")
    status = one_of(params, "CallStatus", CALL_STATUS_RANK)
    answered_by = optional_one_of(params, "AnsweredBy", AMD_RANK)
    sequence = _sequence_number(params)
    event_key = f"status:{status}"

    def apply(attempt: Attempt) -> WebhookResult:
        before = attempt_state(attempt)
        if answered_by:
            _merge_answered_by(attempt, answered_by)
        detail = None
        if _supersedes(CALL_STATUS_RANK, status, sequence, attempt.carrier_status,
                       lambda: context.recorder.applied_sequence(attempt)):
            _set_call_status(attempt, status, params)
        else:
            detail = f"{status} does not supersede {attempt.carrier_status}: kept"
        _refresh_call_outcome(attempt)
        return _finish(session, attempt, before, "call-status", event_key, at, context, detail)

    return _once_for_attempt(context, call_sid, event_key, params, at, apply)


def _sequence_number(params: dict[str, str]) -> int | None:
    raw = params.get("SequenceNumber", "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidEvent(f"SequenceNumber={raw!r} is not a whole number") from None


def _supersedes(ranks: dict[str, int], new: str, new_sequence: int | None, current: str | None,
                current_sequence: Callable[[], int | None]) -> bool:
    """Whether status `new` replaces `current`: a higher rank does; between two different
    statuses of one rank (two final ones) only a higher SequenceNumber does, when both have one.
    `current_sequence` is asked only in that rare case: it costs a query."""
    if current is None or current not in ranks:
        return True
    if ranks[new] != ranks[current]:
        return ranks[new] > ranks[current]
    if new == current:
        return False
    if new_sequence is None:
        return False
    applied = current_sequence()
    return applied is not None and new_sequence > applied


def _set_call_status(attempt: Attempt, status: str, params: dict[str, str]) -> None:
    attempt.carrier_status = status
    if status == "completed":
        attempt.status = "completed"           # the outcome follows from AMD: _refresh_call_outcome
    elif status in CALL_FINAL:
        attempt.status, attempt.outcome = CALL_FINAL[status]
        if status == "failed":
            attempt.error = _carrier_error("call failed", params)
    elif attempt.status not in TERMINAL_ATTEMPT_STATUSES:
        attempt.status = "dialing"


def _carrier_error(what: str, params: dict[str, str]) -> str:
    codes = [f"{name} {params[name]}" for name in ("ErrorCode", "SipResponseCode") if params.get(name)]
    return f"carrier: {what}" + (f" ({', '.join(codes)})" if codes else "")


def _answered_outcome(answered_by: str | None) -> str:
    # Without AMD, or when AMD could not tell ("unknown"), a completed call was answered: the
    # no-retry reading, so an undecided case never causes an extra call. A later AMD result
    # saying "machine" still turns it into voicemail (and schedules the retry then).
    if answered_by and answered_by.startswith("machine"):
        return "voicemail"
    if answered_by == "fax":
        return "fax"
    return "answered"


def _refresh_call_outcome(attempt: Attempt) -> None:
    if attempt.carrier_status == "completed":
        attempt.outcome = _answered_outcome(attempt.answered_by)


def _merge_answered_by(attempt: Attempt, answered_by: str) -> None:
    current = attempt.answered_by
    if current is None or AMD_RANK[answered_by] > AMD_RANK.get(current, -1):
        attempt.answered_by = answered_by


# --- answering machine detection --------------------------------------------------------------

def _amd(session: Session, params: dict[str, str], at: datetime, context: _Context) -> WebhookResult:
    call_sid = required(params, "CallSid")
    answered_by = one_of(params, "AnsweredBy", AMD_RANK)
    event_key = f"amd:{answered_by}"

    def apply(attempt: Attempt) -> WebhookResult:
        # AMD may arrive before or after the call's `completed`: the outcome is recomputed from
        # whatever is on file now, so both orders end in the same state.
        before = attempt_state(attempt)
        _merge_answered_by(attempt, answered_by)
        _refresh_call_outcome(attempt)
        detail = None if attempt.answered_by == answered_by else f"kept {attempt.answered_by}"
        return _finish(session, attempt, before, "amd", event_key, at, context, detail)

    return _once_for_attempt(context, call_sid, event_key, params, at, apply)


# --- SMS status -------------------------------------------------------------------------------

def _sms_status(session: Session, params: dict[str, str], at: datetime, context: _Context) -> WebhookResult:
    message_sid = required(params, "MessageSid")
    status = one_of(params, "MessageStatus", SMS_STATUS_RANK)
    event_key = f"sms-status:{status}"
    if context.recorder.attempt_id_for(message_sid) is None and event_exists(session, message_sid, SENT_KEY):
        return _reply_status(session, message_sid, event_key, params, at)

    def apply(attempt: Attempt) -> WebhookResult:
        before = attempt_state(attempt)
        detail = None
        if _supersedes(SMS_STATUS_RANK, status, None, attempt.carrier_status, lambda: None):
            _set_sms_status(attempt, status, params)
        else:
            detail = f"{status} does not supersede {attempt.carrier_status}: kept"
        return _finish(session, attempt, before, "sms-status", event_key, at, context, detail)

    return _once_for_attempt(context, message_sid, event_key, params, at, apply)


def _set_sms_status(attempt: Attempt, status: str, params: dict[str, str]) -> None:
    attempt.carrier_status = status
    if status in SMS_FINAL:
        attempt.status, attempt.outcome = SMS_FINAL[status]
        if status in ("undelivered", "failed"):
            attempt.error = _carrier_error(f"message {status}", params)
    elif attempt.status not in TERMINAL_ATTEMPT_STATUSES:
        attempt.status = "dialing"


def _reply_status(session: Session, message_sid: str, event_key: str, params: dict[str, str],
                  at: datetime) -> WebhookResult:
    """A status of a reply we sent (opt-out confirmation, HELP): kept, no attempt to update."""
    result = WebhookResult(kind="sms-status", carrier_id=message_sid, event_key=event_key,
                           applied=False, detail="status of a reply we sent: recorded")
    if not claim_event(session, message_sid, event_key, attempt_id=None, params=params, at=at, result=result):
        return stored_result(session, message_sid, event_key)
    return result


# --- speech and key presses -------------------------------------------------------------------

def _gather(session: Session, params: dict[str, str], at: datetime, context: _Context) -> WebhookResult:
    """Kept as an event for the conversation engine. One thing is acted on now: speech that
    reads as an opt-out ("stop calling me") is a revocation, stored before anything else."""
    call_sid = required(params, "CallSid")
    event_key = _gather_key(params)
    attempt = attempt_for(session, call_sid)
    if attempt is None:
        raise UnknownCall(f"unknown CallSid {call_sid}: no attempt was placed with it")
    previous = stored_result(session, call_sid, event_key)
    if previous is not None:
        return previous
    revocation_detail = _revoke_if_spoken_opt_out(session, attempt, params, at)

    def apply(locked: Attempt) -> WebhookResult:
        return WebhookResult(kind="gather", carrier_id=call_sid, event_key=event_key,
                             applied=revocation_detail is not None,
                             action="revoked" if revocation_detail else "stored",
                             detail=revocation_detail).with_attempt(locked)

    return _once_for_attempt(context, call_sid, event_key, params, at, apply)


def _gather_key(params: dict[str, str]) -> str:
    # A call has many gathers and Twilio gives them no id: a `turn` in the action URL's query
    # (merged into params by the route) names one; otherwise the content does, so only an
    # identical redelivery is a duplicate.
    if params.get("turn"):
        return f"gather:turn:{params['turn']}"
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode("utf-8")).hexdigest()[:24]
    return f"gather:{digest}"


def _revoke_if_spoken_opt_out(session: Session, attempt: Attempt, params: dict[str, str],
                              at: datetime) -> str | None:
    speech = params.get("SpeechResult", "")
    # A whole-answer keyword ("alto") or a phrase anywhere: the same words an SMS reply is read by.
    phrase = opt_out_words.opt_out(speech) if speech else None
    if phrase is None:
        return None
    phone = session.get(Contact, attempt.contact_id).e164
    stored = records.revoke(session, phone, {Channel.VOICE, Channel.SMS}, RevocationVia.SPOKEN, at,
                            actor=ACTOR, at=at, audit=audit.append,
                            note=f"call {attempt.carrier_id}: said {speech[:300]!r}")
    return f"revocation#{stored.row.id} (spoken: {phrase})"


# --- shared steps -----------------------------------------------------------------------------

def _once_for_attempt(context: _Context, carrier_id: str, event_key: str, params: dict[str, str],
                      at: datetime, apply: Callable[[Attempt], WebhookResult]) -> WebhookResult:
    """Refuse unknown ids, claim the event, apply it to the locked attempt, keep the result."""
    recorder = context.recorder
    attempt_id = recorder.attempt_id_for(carrier_id)
    if attempt_id is None:
        # A crash may have kept the carrier id from being recorded: the URL names the attempt.
        attempt_id = adopt_by_callback(recorder.session, carrier_id, params, at)
    if attempt_id is None:
        what = "CallSid" if event_key.startswith(("status:", "amd:", "gather:")) else "MessageSid"
        raise UnknownCall(f"unknown {what} {carrier_id}: no attempt was placed with it")
    if not recorder.claim(carrier_id, event_key, attempt_id=attempt_id, params=params, at=at):
        return recorder.stored_result(carrier_id, event_key)
    result = apply(recorder.lock_attempt(attempt_id))
    recorder.save_result(result, params)
    return result


def _finish(session: Session, attempt: Attempt, before: dict[str, str | None], kind: str,
            event_key: str, at: datetime, context: _Context, detail: str | None) -> WebhookResult:
    """Stamp, audit if anything changed, schedule a retry when the outcome just became retryable."""
    if attempt.last_event_at is None or attempt.last_event_at < at:
        attempt.last_event_at = at
    changed = attempt_state(attempt) != before
    if changed:
        attempt.updated_at = at
        session.add(attempt)
        context.recorder.audit_change(attempt, before, event_key=event_key, at=at)
        if attempt.outcome in RETRYABLE_OUTCOMES and attempt.outcome != before["outcome"]:
            _schedule_retry_once(session, attempt, at, context)
    else:
        session.add(attempt)
    result = WebhookResult(kind=kind, carrier_id=attempt.carrier_id, event_key=event_key,
                           applied=changed, detail=None if changed else detail or "no change")
    return result.with_attempt(attempt)


def _schedule_retry_once(session: Session, attempt: Attempt, at: datetime, context: _Context) -> None:
    # At most one retry per carrier call, even when the outcome is refined later (completed
    # without AMD, then AMD says machine): the claim row is the guard.
    if not context.recorder.claim(attempt.carrier_id, RETRY_KEY, attempt_id=attempt.id,
                                  params={"outcome": attempt.outcome}, at=at):
        return
    context.recorder.write_pending()        # the retry's own writes and audit come after ours
    hook = context.retry_hook or _default_retry_hook()
    if hook is None:
        # A missed retry is a lost call, never an unlawful one: keep the event, say so loudly.
        log.warning("attempt#%s ended %s but no retry scheduler is installed", attempt.id, attempt.outcome)
        audit.append(session, actor=ACTOR, action="attempt.retry_not_scheduled", subject=f"attempt#{attempt.id}",
                     at=at, payload={"outcome": attempt.outcome, "reason": "scheduler.retries is not installed"})
        return
    hook(session, attempt, at)


def _default_retry_hook() -> RetryHook | None:
    # Imported when first needed: `scheduler` sits above `outbound` in the import order, and the
    # one webhook path must schedule retries whoever delivers the event (route or simulator).
    try:
        from scheduler.retries import schedule_retry
    except ModuleNotFoundError as error:
        if error.name in ("scheduler", "scheduler.retries"):
            return None
        raise
    return schedule_retry


def _sms_inbound(session: Session, params: dict[str, str], at: datetime, context: _Context) -> WebhookResult:
    return handle_inbound_sms(session, params, at, context.adapter)


_HANDLERS: dict[str, Callable[[Session, dict[str, str], datetime, _Context], WebhookResult]] = {
    "call-status": _call_status,
    "amd": _amd,
    "sms-status": _sms_status,
    "sms-inbound": _sms_inbound,
    "gather": _gather,
}
KINDS = tuple(_HANDLERS)
