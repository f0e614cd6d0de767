"""Carrier events handled in batches (one transaction, one commit) end exactly as one by one."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from api.event_writer import EventWriter
from outbound import audit
from outbound.carrier_events import (
    NotBatchable, PendingEvent, UnknownCall, handle_webhook, handle_webhook_batch,
)
from outbound.db import session_scope
from outbound.models import Attempt, CarrierEvent
from webhook_support import RetryRecorder, add_attempt, add_campaign, at, call_sid, count, event_keys

# Per call: (kind, params without the sid, second received). Out of order, duplicated, refined.
CALL_SCRIPTS = [
    [("call-status", {"CallStatus": "initiated", "SequenceNumber": "0"}, 0),
     ("call-status", {"CallStatus": "ringing", "SequenceNumber": "1"}, 1),
     ("call-status", {"CallStatus": "in-progress", "SequenceNumber": "2"}, 5),
     ("call-status", {"CallStatus": "completed", "SequenceNumber": "3", "AnsweredBy": "human"}, 40)],
    [("call-status", {"CallStatus": "completed", "AnsweredBy": "machine_end_beep"}, 30),
     ("call-status", {"CallStatus": "ringing"}, 31),
     ("call-status", {"CallStatus": "initiated"}, 32)],
    [("call-status", {"CallStatus": "busy"}, 3), ("call-status", {"CallStatus": "busy"}, 63)],
    [("call-status", {"CallStatus": "completed"}, 20), ("amd", {"AnsweredBy": "machine_start"}, 21),
     ("amd", {"AnsweredBy": "machine_end_beep"}, 22), ("amd", {"AnsweredBy": "unknown"}, 23)],
]
SMS_SCRIPT = [("sms-status", {"MessageStatus": "sent"}, 1), ("sms-status", {"MessageStatus": "delivered"}, 4),
              ("sms-status", {"MessageStatus": "queued"}, 5)]


def prepare(session: Session, name: str) -> list[PendingEvent]:
    """A campaign whose attempts receive every script above, interleaved across calls."""
    voice, sms = add_campaign(session, name), add_campaign(session, name + " sms", channel="sms")
    scripted = [(add_attempt(session, voice, f"+1212555{index:04d}"), script)
                for index, script in enumerate(CALL_SCRIPTS)]
    scripted.append((add_attempt(session, sms, "+12125559999", channel="sms"), SMS_SCRIPT))
    events = []
    for step in range(max(len(script) for _, script in scripted)):
        for attempt, script in scripted:
            if step < len(script):
                kind, params, second = script[step]
                sid_name = "MessageSid" if kind == "sms-status" else "CallSid"
                events.append(PendingEvent(kind, {sid_name: attempt.carrier_id, **params}, at(second)))
    return events


def end_state(session: Session, campaign_name: str) -> list[tuple]:
    rows = session.execute(select(Attempt).order_by(Attempt.id)).scalars()
    return [(a.status, a.carrier_status, a.answered_by, a.outcome, a.error, a.last_event_at)
            for a in rows if a.campaign_id in _campaign_ids(session, campaign_name)]


def _campaign_ids(session: Session, name: str) -> set[int]:
    from outbound.models import Campaign
    return set(session.execute(select(Campaign.id).where(Campaign.name.in_([name, name + " sms"]))).scalars())


def comparable(result) -> tuple:
    stored = result.as_dict()
    return tuple(value for key, value in sorted(stored.items()) if key not in ("carrier_id", "attempt_id"))


def test_a_batch_ends_in_the_same_states_results_and_retries_as_one_event_at_a_time(engine):
    one_retry, batch_retry = RetryRecorder(), RetryRecorder()
    with Session(engine) as session:
        singles, batched = prepare(session, "one"), prepare(session, "batch")
    with Session(engine) as session:
        one_results = [handle_webhook(session, e.kind, e.params, e.at, schedule_retry=one_retry) for e in singles]
    with session_scope(engine) as session:
        batch_results = handle_webhook_batch(session, batched[:7], schedule_retry=batch_retry)
    with session_scope(engine) as session:
        batch_results += handle_webhook_batch(session, batched[7:], schedule_retry=batch_retry)

    assert [comparable(r) for r in batch_results] == [comparable(r) for r in one_results]
    assert [r.duplicate for r in batch_results] == [r.duplicate for r in one_results]
    with Session(engine) as session:
        assert end_state(session, "batch") == end_state(session, "one")
        assert [s for s in end_state(session, "batch") if s[3]] and len(batch_retry.calls) == len(one_retry.calls) == 3
        assert [o for _, o, _ in batch_retry.calls] == [o for _, o, _ in one_retry.calls]
        assert audit.verify(session).ok


def test_a_batch_with_an_unknown_call_writes_nothing_and_says_it_needs_the_single_path(engine):
    with Session(engine) as session:
        events = prepare(session, "c")[:3]
        before = count(session, CarrierEvent)
    events.insert(1, PendingEvent("call-status", {"CallSid": call_sid(), "CallStatus": "ringing"}, at(1)))
    with pytest.raises(NotBatchable), session_scope(engine) as session:
        handle_webhook_batch(session, events)
    with Session(engine) as session:
        assert count(session, CarrierEvent) == before


def test_the_writer_answers_each_event_with_its_own_result_even_when_one_is_unknown(engine):
    with Session(engine) as session:
        events = prepare(session, "w")
    unknown = PendingEvent("call-status", {"CallSid": call_sid(), "CallStatus": "ringing"}, at(1))
    writer = EventWriter(lambda: engine)
    futures = [writer.submit(event) for event in events[:5]]
    bad = writer.submit(unknown)
    futures += [writer.submit(event) for event in events[5:]]

    results = [future.result(timeout=60) for future in futures]
    with pytest.raises(UnknownCall):
        bad.result(timeout=60)
    assert all(result.carrier_id for result in results)
    with Session(engine) as session:
        applied = session.execute(select(func.count()).select_from(CarrierEvent)
                                  .where(CarrierEvent.event_key != "retry")).scalar_one()
        assert applied == len({(e.params.get("CallSid") or e.params.get("MessageSid"), key)
                               for e, key in ((e, r.event_key) for e, r in zip(events, results))})
        assert event_keys(session, events[0].params["CallSid"])[:1] == ["status:completed"]
