"""Claiming and leases: one claim per attempt, expired claims back to the queue, dialing attempts
reconciled from the carrier by id and never re-sent, queued calls cancelled past their allow."""
from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlmodel import Session

from consent.rules import load_pack
from outbound.db import session_scope
from outbound.models import Attempt, AuditEvent, Campaign
from scheduler.claims import UNKNOWN_OUTCOME_ERROR, claim_due, reap
from scheduler.dispatch import DispatchConfig, dispatch_once
from scheduler.housekeeping import housekeeping
from dispatch_support import (
    NOON_NEW_YORK, FakeAdapter, FakeRegistry, grant_consent, new_york_phone, running_campaign,
)

PACK = load_pack()


def rows(engine) -> list[Attempt]:
    with Session(engine) as session:
        return list(session.execute(select(Attempt).order_by(Attempt.id)).scalars())


def claim(engine, worker="w1", now=NOON_NEW_YORK, limit=100, window=2):
    return claim_due(engine, worker_id=worker, now=now, limit=limit, lease_seconds=60, pacing_window_seconds=window)


def test_claim_takes_due_attempts_of_running_campaigns_only(engine):
    running_campaign(engine, [new_york_phone(i) for i in range(100, 105)])
    paused = running_campaign(engine, [new_york_phone(200)], name="paused")
    with session_scope(engine) as session:
        session.execute(update(Campaign).where(Campaign.id == paused).values(status="paused"))
        session.execute(update(Attempt).where(Attempt.id == 1).values(due_at=NOON_NEW_YORK + timedelta(hours=1)))

    claimed = claim(engine)
    assert sorted(claimed) == [2, 3, 4, 5]
    by_id = {a.id: a for a in rows(engine)}
    assert all(by_id[i].status == "claimed" and by_id[i].claimed_by == "w1" for i in claimed)
    assert by_id[2].lease_until == NOON_NEW_YORK + timedelta(seconds=60)
    assert claim(engine, worker="w2") == []          # nothing left that is due


def test_sqlite_claims_from_threads_never_overlap(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(i) for i in range(100, 400)])
    results: list[list[int]] = []

    def worker(name):
        for _ in range(10):
            # A wide pacing window: the rate budget (cps 100 × 10 s) is not what this test is about.
            results.append(claim(sqlite_engine, worker=name, limit=7, window=10))

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [attempt_id for batch in results for attempt_id in batch]
    assert len(claimed) == len(set(claimed)) == 280
    owners = {a.id: a.claimed_by for a in rows(sqlite_engine) if a.status == "claimed"}
    assert len(owners) == 280


def test_expired_claim_goes_back_to_pending(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(123)])
    claim(sqlite_engine)
    assert reap(sqlite_engine, FakeAdapter(), now=NOON_NEW_YORK + timedelta(seconds=30),
                call_lease_seconds=1800).released == 0
    report = reap(sqlite_engine, FakeAdapter(), now=NOON_NEW_YORK + timedelta(seconds=61), call_lease_seconds=1800)
    (attempt,) = rows(sqlite_engine)
    assert report.released == 1
    assert (attempt.status, attempt.claimed_by, attempt.lease_until) == ("pending", None, None)
    assert claim(sqlite_engine, worker="w2", now=NOON_NEW_YORK + timedelta(seconds=62)) == [attempt.id]


def test_a_claim_reaped_and_retaken_is_not_dialed_by_its_first_worker(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(123)])
    claim(sqlite_engine, worker="slow")
    later = NOON_NEW_YORK + timedelta(minutes=5)
    reap(sqlite_engine, FakeAdapter(), now=later, call_lease_seconds=1800)
    claim(sqlite_engine, worker="w2", now=later)
    # The slow worker's decision step only moves attempts it still holds.
    from scheduler.dispatch import _decide_batch, DispatchReport
    report = DispatchReport()
    assert _decide_batch(sqlite_engine, [1], worker_id="slow", now=later, pack=PACK, registry=FakeRegistry(),
                         config=DispatchConfig(), report=report) == []
    assert report.lost_claims == 1 and rows(sqlite_engine)[0].claimed_by == "w2"


def dial_one(engine, adapter):
    report = dispatch_once(engine, adapter, worker_id="w1", now=NOON_NEW_YORK, pack=PACK, registry=FakeRegistry(),
                           config=DispatchConfig(send_lease_seconds=120, call_lease_seconds=600))
    assert report.dialed == 1
    return rows(engine)[0]


def test_dialing_attempt_is_reconciled_from_the_carrier_by_id(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(123)])
    adapter = FakeAdapter()
    attempt = dial_one(sqlite_engine, adapter)

    adapter.statuses[attempt.carrier_id] = "in-progress"
    report = reap(sqlite_engine, adapter, now=NOON_NEW_YORK + timedelta(seconds=601), call_lease_seconds=600)
    (attempt,) = rows(sqlite_engine)
    assert report.still_live == 1 and attempt.status == "dialing"
    assert attempt.lease_until == NOON_NEW_YORK + timedelta(seconds=1201)

    adapter.statuses[attempt.carrier_id] = "busy"
    report = reap(sqlite_engine, adapter, now=NOON_NEW_YORK + timedelta(seconds=1202), call_lease_seconds=600)
    (attempt,) = rows(sqlite_engine)
    assert report.reconciled == {"busy": 1}
    assert (attempt.status, attempt.outcome, attempt.carrier_status) == ("completed", "busy", "busy")
    assert len(adapter.calls) == 1                       # asked about, never sent again


def crash(request):
    raise KeyboardInterrupt("worker killed")


def crashed_dispatch(engine, adapter, worker="w1", now=NOON_NEW_YORK):
    with pytest.raises(KeyboardInterrupt):
        dispatch_once(engine, adapter, worker_id=worker, now=now, pack=PACK, registry=FakeRegistry(),
                      config=DispatchConfig(send_lease_seconds=120))


def lookups(engine) -> list[dict]:
    with Session(engine) as session:
        return [json.loads(event.payload) for event in session.execute(select(AuditEvent).where(
            AuditEvent.action == "attempt.carrier_lookup").order_by(AuditEvent.id)).scalars()]


def reap_at(engine, adapter, seconds, window=300):
    return reap(engine, adapter, now=NOON_NEW_YORK + timedelta(seconds=seconds), call_lease_seconds=600,
                callback_window_seconds=window)


def test_sending_attempt_the_carrier_never_took_goes_back_to_the_gate_only_after_the_callback_window(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(123)])
    # Killed after the `sending` mark was committed, before the request reached the carrier.
    adapter = FakeAdapter(before_call=crash)
    crashed_dispatch(sqlite_engine, adapter)
    (attempt,) = rows(sqlite_engine)
    assert attempt.status == "sending" and attempt.carrier_id is None
    adapter.before_call = None

    report = reap_at(sqlite_engine, adapter, 121)           # lease over, callback window not yet
    assert (report.awaiting_lookup, report.back_to_gate, rows(sqlite_engine)[0].status) == (1, 0, "sending")
    report = reap_at(sqlite_engine, adapter, 301)
    (attempt,) = rows(sqlite_engine)
    assert report.back_to_gate == 1 and report.unknown == 0
    assert (attempt.status, attempt.allow_expires_at, attempt.dispatched_at) == ("pending", None, None)
    assert lookups(sqlite_engine)[-1]["settled"] == "not_found: back to the gate"

    report = dispatch_once(sqlite_engine, adapter, worker_id="w2", now=NOON_NEW_YORK + timedelta(seconds=302),
                           pack=PACK, registry=FakeRegistry())
    assert report.allowed == 1 and len(adapter.calls) == 1       # decided again by the gate, sent once


def test_sending_attempt_the_carrier_took_is_found_by_number_and_never_sent_again(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(123)])
    # Killed after the carrier took the call, before its sid was recorded.
    adapter = FakeAdapter(after_call=crash)
    crashed_dispatch(sqlite_engine, adapter)
    adapter.after_call = None
    [(sid, _request)] = adapter.calls
    adapter.statuses[sid] = "busy"

    report = reap_at(sqlite_engine, adapter, 121)
    (attempt,) = rows(sqlite_engine)
    assert report.found_at_carrier == 1
    assert (attempt.carrier_id, attempt.status, attempt.outcome) == (sid, "completed", "busy")
    assert lookups(sqlite_engine)[-1] | {"since": None} == {
        "to": "+12125550123", "since": None, "listed": [sid], "candidates": [sid], "settled": "found",
        "carrier_id": sid}
    dispatch_once(sqlite_engine, adapter, worker_id="w2", now=NOON_NEW_YORK + timedelta(seconds=400), pack=PACK,
                  registry=FakeRegistry())
    assert len(adapter.calls) == 1


def test_two_unrecorded_calls_to_the_number_leave_the_attempt_unknown_with_the_lookup_on_record(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(123)])
    adapter = FakeAdapter(after_call=crash)
    crashed_dispatch(sqlite_engine, adapter)
    adapter.after_call = None
    # Another call to the same number from the same caller ID that no attempt recorded.
    adapter.calls.append(("CA" + "f" * 32, adapter.calls[0][1]))
    adapter.statuses["CA" + "f" * 32] = "completed"

    report = reap_at(sqlite_engine, adapter, 121)
    (attempt,) = rows(sqlite_engine)
    assert report.unknown == 1 and (attempt.status, attempt.outcome) == ("failed", "unknown")
    assert "CA" + "f" * 32 in attempt.error
    assert lookups(sqlite_engine)[-1]["settled"] == "ambiguous: unknown"


def test_an_allowed_attempt_still_claimed_after_a_crash_goes_back_to_the_gate(sqlite_engine, monkeypatch):
    from scheduler import dispatch
    running_campaign(sqlite_engine, [new_york_phone(123)])
    monkeypatch.setattr(dispatch._Sender, "mark_sending", lambda self, item, at: crash(item))
    adapter = FakeAdapter()
    crashed_dispatch(sqlite_engine, adapter)
    (attempt,) = rows(sqlite_engine)
    assert attempt.status == "claimed" and attempt.decision_id is not None and adapter.calls == []
    monkeypatch.undo()

    assert reap_at(sqlite_engine, adapter, 121).released == 1
    (attempt,) = rows(sqlite_engine)
    assert (attempt.status, attempt.allow_expires_at, attempt.dispatched_at) == ("pending", None, None)
    report = dispatch_once(sqlite_engine, adapter, worker_id="w2", now=NOON_NEW_YORK + timedelta(seconds=122),
                           pack=PACK, registry=FakeRegistry())
    assert report.allowed == 1 and len(adapter.calls) == 1


@pytest.mark.parametrize(("carrier_says", "expected"), [
    ("delivered", ("completed", "delivered")),
    ("sent", ("completed", "sent")),               # no delivery receipt came: it went out
    ("gone", ("completed", "sent")),               # Twilio no longer holds it: sent, not an error
    ("undelivered", ("failed", "failed")),
    ("queued", ("dialing", None)),
])
def test_a_text_whose_lease_ran_out_is_reconciled_by_its_message_sid(sqlite_engine, carrier_says, expected):
    grant_consent(sqlite_engine, [new_york_phone(123)])
    running_campaign(sqlite_engine, [new_york_phone(123)], channel="sms", voice=None, purpose="informational")
    adapter = FakeAdapter(sid_prefix="SM")
    attempt = dial_one(sqlite_engine, adapter)
    assert attempt.carrier_id.startswith("SM")
    if carrier_says == "gone":
        adapter.gone.add(attempt.carrier_id)
    else:
        adapter.statuses[attempt.carrier_id] = carrier_says
    report = reap(sqlite_engine, adapter, now=NOON_NEW_YORK + timedelta(hours=1), call_lease_seconds=600)
    (attempt,) = rows(sqlite_engine)
    assert report.fetch_errors == 0
    assert (attempt.status, attempt.outcome) == expected


def test_carrier_id_arriving_after_the_reaper_gave_up_is_still_recorded(sqlite_engine):
    from scheduler.dispatch import _record_carrier_id
    from telephony.adapter import CarrierCall
    running_campaign(sqlite_engine, [new_york_phone(123)])
    with session_scope(sqlite_engine) as session:
        session.execute(update(Attempt).values(status="failed", outcome="unknown", error=UNKNOWN_OUTCOME_ERROR))
    _record_carrier_id(sqlite_engine, 1, CarrierCall("CA1", "queued"), NOON_NEW_YORK, DispatchConfig())
    (attempt,) = rows(sqlite_engine)
    assert (attempt.status, attempt.carrier_id, attempt.outcome) == ("dialing", "CA1", None)


def test_call_still_queued_after_its_allow_expires_is_cancelled_and_goes_back_to_the_gate(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(123)])
    adapter = FakeAdapter()
    attempt = dial_one(sqlite_engine, adapter)
    before_expiry = attempt.allow_expires_at - timedelta(seconds=1)
    assert housekeeping(sqlite_engine, adapter, now=before_expiry).expired_cancelled == 0

    report = housekeeping(sqlite_engine, adapter, now=attempt.allow_expires_at)
    first, second = rows(sqlite_engine)
    assert report.expired_cancelled == 1 and adapter.cancelled == [first.carrier_id]
    assert (first.status, first.outcome) == ("cancelled", "expired_in_queue")
    assert (second.status, second.attempt_no, second.due_at) == ("pending", 2, attempt.allow_expires_at)


def test_campaign_completes_when_nothing_is_left(sqlite_engine):
    campaign_id = running_campaign(sqlite_engine, [new_york_phone(123)])
    adapter = FakeAdapter()
    attempt = dial_one(sqlite_engine, adapter)
    assert housekeeping(sqlite_engine, adapter, now=NOON_NEW_YORK).campaigns_completed == 0
    adapter.statuses[attempt.carrier_id] = "completed"
    reap(sqlite_engine, adapter, now=NOON_NEW_YORK + timedelta(hours=1), call_lease_seconds=600)
    assert housekeeping(sqlite_engine, adapter, now=NOON_NEW_YORK + timedelta(hours=1)).campaigns_completed == 1
    with Session(sqlite_engine) as session:
        assert session.get(Campaign, campaign_id).status == "completed"
