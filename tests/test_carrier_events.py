"""Carrier events into attempts: once per event, final states stay final, outcomes and retries."""
from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import select

from consent.tables import Revocation
from outbound import audit
from outbound.carrier_events import InvalidEvent, UnknownCall, handle_webhook
from outbound.models import Attempt, AuditEvent, CarrierEvent
from webhook_support import (
    RetryRecorder, T0, add_attempt, add_campaign, at, audit_actions, call_sid, count, event_keys,
)

PHONE = "+12125550123"


@pytest.fixture
def retry():
    return RetryRecorder()


@pytest.fixture
def campaign(session):
    return add_campaign(session)


def status(session, attempt, call_status, when, retry, **extra):
    params = {"CallSid": attempt.carrier_id, "CallStatus": call_status, **extra}
    return handle_webhook(session, "call-status", params, when, schedule_retry=retry)


def reload(session, attempt) -> Attempt:
    session.expire_all()
    return session.get(Attempt, attempt.id)


# --- once per event ---------------------------------------------------------------------------

def test_a_call_in_order_ends_answered_and_every_change_is_audited_by_the_carrier(session, campaign, retry):
    attempt = add_attempt(session, campaign, PHONE)
    for second, call_status in enumerate(("initiated", "ringing", "in-progress")):
        status(session, attempt, call_status, at(second), retry)
    result = status(session, attempt, "completed", at(30), retry, AnsweredBy="human", CallDuration="27")

    attempt = reload(session, attempt)
    assert (attempt.status, attempt.carrier_status, attempt.outcome) == ("completed", "completed", "answered")
    assert attempt.answered_by == "human" and attempt.last_event_at == at(30)
    assert result.applied and result.outcome == "answered" and not result.duplicate
    changes = [a for a in audit_actions(session) if a[1] == "attempt.carrier_event"]
    assert changes == [("carrier", "attempt.carrier_event")] * 4
    assert retry.calls == []
    assert audit.verify(session).ok


def test_a_redelivered_event_changes_nothing_and_answers_the_same(session, campaign, retry):
    attempt = add_attempt(session, campaign, PHONE)
    first = status(session, attempt, "busy", at(5), retry)
    rows, audits = count(session, CarrierEvent), count(session, AuditEvent)

    second = status(session, attempt, "busy", at(65), retry)

    assert second.duplicate and not first.duplicate
    assert second == first                           # same result, field for field
    assert (count(session, CarrierEvent), count(session, AuditEvent)) == (rows, audits)
    assert reload(session, attempt).last_event_at == at(5)
    assert len(retry.calls) == 1


def test_an_event_for_an_unknown_call_is_refused_and_changes_nothing(session, campaign, retry):
    add_attempt(session, campaign, PHONE)
    unknown = call_sid()
    with pytest.raises(UnknownCall, match=f"unknown CallSid {unknown}"):
        handle_webhook(session, "call-status", {"CallSid": unknown, "CallStatus": "completed"}, at(1),
                       schedule_retry=retry)
    for kind, params in (("amd", {"CallSid": unknown, "AnsweredBy": "human"}),
                         ("gather", {"CallSid": unknown, "SpeechResult": "stop calling me"}),
                         ("sms-status", {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"})):
        with pytest.raises(UnknownCall):
            handle_webhook(session, kind, params, at(1), schedule_retry=retry)
    assert (count(session, CarrierEvent), count(session, AuditEvent), count(session, Revocation)) == (0, 0, 0)


@pytest.mark.parametrize("params, message", [
    ({"CallStatus": "completed"}, "missing CallSid"),
    ({"CallSid": "CA1", "CallStatus": "answered"}, "CallStatus='answered' is not one of"),
    ({"CallSid": "CA1", "CallStatus": "ringing", "SequenceNumber": "two"}, "SequenceNumber='two'"),
    ({"CallSid": "CA1", "CallStatus": "completed", "AnsweredBy": "robot"}, "AnsweredBy='robot'"),
])
def test_impossible_parameters_are_refused_naming_the_parameter(session, params, message):
    with pytest.raises(InvalidEvent, match=message):
        handle_webhook(session, "call-status", params, at(1))
    assert count(session, CarrierEvent) == 0


def test_an_unknown_kind_is_refused(session):
    with pytest.raises(InvalidEvent, match="unknown webhook kind 'voicemail'"):
        handle_webhook(session, "voicemail", {}, at(1))


# --- out of order -----------------------------------------------------------------------------

@pytest.mark.parametrize("order", list(itertools.permutations(("initiated", "ringing", "in-progress", "completed"))))
def test_any_arrival_order_ends_in_the_final_state(session, campaign, retry, order):
    attempt = add_attempt(session, campaign, PHONE)
    for second, call_status in enumerate(order):
        status(session, attempt, call_status, at(second), retry, AnsweredBy="human")
    attempt = reload(session, attempt)
    assert (attempt.status, attempt.carrier_status, attempt.outcome) == ("completed", "completed", "answered")


@pytest.mark.parametrize("final", ["busy", "no-answer", "failed", "canceled"])
def test_a_late_ringing_or_in_progress_never_overwrites_a_final_status(session, campaign, retry, final):
    attempt = add_attempt(session, campaign, PHONE)
    status(session, attempt, final, at(10), retry)
    before = reload(session, attempt)
    before_state = (before.status, before.carrier_status, before.outcome)

    late = status(session, attempt, "ringing", at(11), retry)
    status(session, attempt, "in-progress", at(12), retry)

    attempt = reload(session, attempt)
    assert (attempt.status, attempt.carrier_status, attempt.outcome) == before_state
    assert not late.applied and "does not supersede" in late.detail
    assert event_keys(session, attempt.carrier_id) == sorted(
        ["retry", f"status:{final}", "status:ringing", "status:in-progress"] if final != "canceled"
        else [f"status:{final}", "status:ringing", "status:in-progress"])


@pytest.mark.parametrize("first, second, final", [
    (("failed", "3"), ("completed", "5"), "completed"),     # the later-numbered final wins
    (("completed", "5"), ("failed", "3"), "completed"),     # an earlier-numbered one arriving late does not
    (("completed", None), ("failed", None), "completed"),   # without numbers the first final stands
])
def test_between_two_final_statuses_the_sequence_number_decides(session, campaign, retry, first, second, final):
    attempt = add_attempt(session, campaign, PHONE)
    for second_no, (call_status, sequence) in enumerate((first, second)):
        extra = {"SequenceNumber": sequence} if sequence else {}
        status(session, attempt, call_status, at(second_no), retry, AnsweredBy="human", **extra)
    assert reload(session, attempt).carrier_status == final


def test_a_late_ringing_does_not_reopen_an_attempt_we_cancelled(session, campaign, retry):
    attempt = add_attempt(session, campaign, PHONE, status="cancelled", carrier_status="queued")
    status(session, attempt, "ringing", at(1), retry)
    attempt = reload(session, attempt)
    assert (attempt.status, attempt.carrier_status) == ("cancelled", "ringing")


# --- outcomes and retries ---------------------------------------------------------------------

@pytest.mark.parametrize("call_status, answered_by, attempt_status, outcome, retried", [
    ("completed", "human", "completed", "answered", False),
    ("completed", "machine_end_beep", "completed", "voicemail", True),
    ("completed", "machine_start", "completed", "voicemail", True),
    ("completed", "fax", "completed", "fax", False),
    ("completed", None, "completed", "answered", False),      # no AMD: the no-retry reading
    ("busy", None, "completed", "busy", True),
    ("no-answer", None, "completed", "no-answer", True),
    ("failed", None, "failed", "failed", True),
    ("canceled", None, "cancelled", "canceled", False),
])
def test_outcome_mapping_and_the_retry_hook(session, campaign, retry, call_status, answered_by,
                                            attempt_status, outcome, retried):
    attempt = add_attempt(session, campaign, PHONE)
    extra = {"AnsweredBy": answered_by} if answered_by else {}
    status(session, attempt, call_status, at(20), retry, **extra)
    attempt = reload(session, attempt)
    assert (attempt.status, attempt.outcome) == (attempt_status, outcome)
    assert retry.calls == ([(attempt.id, outcome, at(20))] if retried else [])


def test_a_failed_call_keeps_the_carriers_codes(session, campaign, retry):
    attempt = add_attempt(session, campaign, PHONE)
    status(session, attempt, "failed", at(3), retry, ErrorCode="32009", SipResponseCode="503")
    assert reload(session, attempt).error == "carrier: call failed (ErrorCode 32009, SipResponseCode 503)"


@pytest.mark.parametrize("amd_first", [True, False])
def test_amd_before_or_after_completed_ends_as_voicemail_with_one_retry(session, campaign, retry, amd_first):
    attempt = add_attempt(session, campaign, PHONE)
    amd = {"CallSid": attempt.carrier_id, "AnsweredBy": "machine_end_beep"}
    if amd_first:
        handle_webhook(session, "amd", amd, at(8), schedule_retry=retry)
    status(session, attempt, "completed", at(40), retry)
    if not amd_first:
        assert reload(session, attempt).outcome == "answered"     # until AMD says otherwise
        handle_webhook(session, "amd", amd, at(41), schedule_retry=retry)
    handle_webhook(session, "amd", {**amd, "AnsweredBy": "unknown"}, at(42), schedule_retry=retry)

    attempt = reload(session, attempt)
    assert (attempt.outcome, attempt.answered_by) == ("voicemail", "machine_end_beep")
    assert [call[1] for call in retry.calls] == ["voicemail"]


def test_the_default_retry_hook_queues_the_next_attempt_per_campaign_policy(session):
    campaign = add_campaign(session, "Retrying", settings={"retry": {"busy": {"delay_seconds": 3600,
                                                                            "max_attempts": 3}}})
    attempt = add_attempt(session, campaign, PHONE)
    handle_webhook(session, "call-status", {"CallSid": attempt.carrier_id, "CallStatus": "busy"}, at(5))
    retries = session.execute(select(Attempt).where(Attempt.contact_id == attempt.contact_id,
                                                    Attempt.attempt_no == 2)).scalars().all()
    assert [(r.status, r.due_at) for r in retries] == [("pending", at(5) + timedelta(hours=1))]


# --- texts ------------------------------------------------------------------------------------

def test_sms_statuses_end_in_the_final_one_and_a_failure_keeps_its_code(session, campaign, retry):
    delivered = add_attempt(session, campaign, PHONE, channel="sms")
    undelivered = add_attempt(session, campaign, "+12125550124", channel="sms")
    for sid, final, extra in ((delivered.carrier_id, "delivered", {}),
                              (undelivered.carrier_id, "undelivered", {"ErrorCode": "30003"})):
        for second, message_status in enumerate((final, "sent", "queued")):   # worst order
            handle_webhook(session, "sms-status", {"MessageSid": sid, "MessageStatus": message_status, **extra},
                           at(second), schedule_retry=retry)
    delivered, undelivered = reload(session, delivered), session.get(Attempt, undelivered.id)
    assert (delivered.status, delivered.outcome, delivered.carrier_status) == ("completed", "delivered", "delivered")
    assert (undelivered.status, undelivered.outcome) == ("failed", "failed")
    assert undelivered.error == "carrier: message undelivered (ErrorCode 30003)"
    assert [call[1] for call in retry.calls] == ["failed"]


# --- gathers ----------------------------------------------------------------------------------

def test_a_gather_is_stored_once_per_turn(session, campaign, retry):
    attempt = add_attempt(session, campaign, PHONE, carrier_status="in-progress")
    params = {"CallSid": attempt.carrier_id, "SpeechResult": "Tuesday works", "Confidence": "0.91", "turn": "1"}
    first = handle_webhook(session, "gather", params, at(1))
    again = handle_webhook(session, "gather", params, at(2))
    handle_webhook(session, "gather", {**params, "turn": "2", "Digits": "1"}, at(3))
    assert first.action == "stored" and again.duplicate and again == first
    assert event_keys(session, attempt.carrier_id) == ["gather:turn:1", "gather:turn:2"]
    assert count(session, Revocation) == 0


def test_a_spoken_opt_out_in_a_gather_is_a_revocation_of_every_channel(session, campaign):
    attempt = add_attempt(session, campaign, PHONE, carrier_status="in-progress")
    result = handle_webhook(session, "gather", {"CallSid": attempt.carrier_id,
                                                "SpeechResult": "Please stop calling me."}, at(4))
    revocation = session.execute(select(Revocation)).scalar_one()
    assert (revocation.phone, revocation.channels, revocation.via) == (PHONE, "voice sms", "spoken")
    assert result.action == "revoked" and f"revocation#{revocation.id}" in result.detail
    assert revocation.received_at == at(4) and T0 < revocation.received_at


def test_racing_deliveries_of_one_calls_events_still_end_final(engine, session, campaign, retry):
    # Each call's ringing, in-progress and completed are delivered at once from three threads
    # (three sessions): whichever commits last, the attempt ends completed, with one retry claim.
    import threading
    from sqlmodel import Session

    attempts = [add_attempt(session, campaign, f"+1212555{index:04d}") for index in range(5)]
    errors = []

    def deliver(sid, call_status, second):
        try:
            with Session(engine) as own:
                handle_webhook(own, "call-status", {"CallSid": sid, "CallStatus": call_status,
                                                    "AnsweredBy": "machine_end_beep"}, at(second),
                               schedule_retry=retry)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=deliver, args=(a.carrier_id, s, n))
               for a in attempts for n, s in enumerate(("ringing", "in-progress", "completed"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with Session(engine) as check:
        final = [check.get(Attempt, a.id) for a in attempts]
        assert {(a.status, a.carrier_status, a.outcome) for a in final} == {("completed", "completed", "voicemail")}
    assert sorted(call[0] for call in retry.calls) == sorted(a.id for a in attempts)


# --- callbacks that find an attempt whose carrier id was never recorded -----------------------

def unrecorded_attempt(session, campaign, channel="voice", status="sending"):
    attempt = add_attempt(session, campaign, PHONE, channel=channel, status=status, carrier_status=None)
    attempt.carrier_id = None
    session.add(attempt)
    session.commit()
    return attempt


@pytest.mark.parametrize("left_as", ["sending", "pending"])
def test_a_callback_naming_its_attempt_in_the_url_records_the_sid_a_crash_lost(session, campaign, retry, left_as):
    attempt = unrecorded_attempt(session, campaign, status=left_as)
    sid = call_sid()
    params = {"CallSid": sid, "CallStatus": "ringing", "To": PHONE, "attempt": str(attempt.id)}
    result = handle_webhook(session, "call-status", params, at(5), schedule_retry=retry)

    attempt = reload(session, attempt)
    assert (attempt.carrier_id, attempt.status, attempt.carrier_status) == (sid, "dialing", "ringing")
    assert result.applied and result.attempt_id == attempt.id
    assert ("carrier", "attempt.carrier_id_from_callback") in audit_actions(session)
    # Later events find it by its sid as usual.
    status(session, attempt, "busy", at(20), retry)
    assert reload(session, attempt).outcome == "busy"


def test_a_text_status_callback_naming_its_attempt_records_the_message_sid(session, campaign, retry):
    attempt = unrecorded_attempt(session, campaign, channel="sms")
    sid = "SM" + "a" * 32
    handle_webhook(session, "sms-status", {"MessageSid": sid, "MessageStatus": "delivered", "To": PHONE,
                                           "attempt": str(attempt.id)}, at(5), schedule_retry=retry)
    attempt = reload(session, attempt)
    assert (attempt.carrier_id, attempt.status, attempt.outcome) == (sid, "completed", "delivered")


@pytest.mark.parametrize("case", ["other_sid", "other_number", "no_attempt", "settled"])
def test_a_callback_cannot_take_over_an_attempt_that_is_not_its_own(session, campaign, retry, case):
    attempt = unrecorded_attempt(session, campaign, status="completed" if case == "settled" else "sending")
    if case == "other_sid":
        attempt.carrier_id = call_sid()
        session.add(attempt)
        session.commit()
    params = {"CallSid": call_sid(), "CallStatus": "ringing",
              "To": "+13055550123" if case == "other_number" else PHONE,
              "attempt": "999" if case == "no_attempt" else str(attempt.id)}
    with pytest.raises(UnknownCall):
        handle_webhook(session, "call-status", params, at(5), schedule_retry=retry)
    session.rollback()
    assert reload(session, attempt).status == ("completed" if case == "settled" else "sending")
