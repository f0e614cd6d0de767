"""The dispatch loop: decide before dial, defer/block/allow, fail closed, pacing, retries, replay."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from consent.rules import load_pack
from outbound.db import make_engine, session_scope
from outbound.models import Attempt, AuditEvent, Decision
from outbound.replay import replay_decision
from scheduler.claims import reap
from scheduler.dispatch import PACE_SHARE, DispatchConfig, dispatch_once
from scheduler.retries import schedule_retry
from telephony.adapter import CarrierError
from dispatch_support import (
    LATE_NEW_YORK, NOON_NEW_YORK, FakeAdapter, FakeRegistry, new_york_phone, running_campaign,
)

PACK = load_pack()


def dispatch(engine, adapter, now, registry=None, **config):
    return dispatch_once(engine, adapter, worker_id="w1", now=now, pack=PACK,
                         registry=registry or FakeRegistry(), config=DispatchConfig(**config),
                         sleep=lambda _seconds: None)


def attempts(engine) -> list[Attempt]:
    with Session(engine) as session:
        return list(session.execute(select(Attempt).order_by(Attempt.id)).scalars())


def test_allow_stores_decision_and_audit_before_the_carrier_is_asked(engine, db_url):
    running_campaign(engine, [new_york_phone(123)])
    seen = {}

    def check_committed(request):
        # A separate engine: only what is committed is visible from it.
        observer = make_engine(db_url)
        try:
            with Session(observer) as session:
                attempt = session.get(Attempt, request.attempt_id)
                decision = session.get(Decision, attempt.decision_id)
                audited = session.execute(select(func.count()).select_from(AuditEvent).where(
                    AuditEvent.action == "gate.decision", AuditEvent.subject == decision.id)).scalar_one()
                seen.update(status=attempt.status, verdict=decision.verdict, audited=audited)
        finally:
            observer.dispose()

    adapter = FakeAdapter(before_call=check_committed)
    report = dispatch(engine, adapter, NOON_NEW_YORK)

    assert report.allowed == 1 and report.dialed == 1
    assert seen == {"status": "sending", "verdict": "allow", "audited": 1}
    (attempt,) = attempts(engine)
    sid, request = adapter.calls[0]
    assert attempt.carrier_id == sid and request.to == "+12125550123"
    assert attempt.dispatched_at == NOON_NEW_YORK
    # The federal window closes at 21:00 EDT, 01:00 UTC the next day.
    assert attempt.allow_expires_at == datetime(2026, 7, 16, 1, 0, tzinfo=timezone.utc)


def test_defer_sets_due_at_to_next_allowed_at(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(123)], at=LATE_NEW_YORK)
    adapter = FakeAdapter()
    report = dispatch(sqlite_engine, adapter, LATE_NEW_YORK)

    assert report.deferred == 1 and adapter.calls == []
    (attempt,) = attempts(sqlite_engine)
    assert attempt.status == "pending" and attempt.claimed_by is None
    assert attempt.due_at == datetime(2026, 7, 16, 12, 0, tzinfo=timezone.utc)     # 08:00 EDT
    assert attempt.decision_id is not None
    # Not due again before then.
    assert dispatch(sqlite_engine, adapter, LATE_NEW_YORK + timedelta(hours=9)).claimed == 0


def test_block_ends_the_contact(sqlite_engine):
    # A prerecorded telemarketing call needs written consent; there is none.
    running_campaign(sqlite_engine, [new_york_phone(123)], purpose="telemarketing", voice="prerecorded")
    adapter = FakeAdapter()
    report = dispatch(sqlite_engine, adapter, NOON_NEW_YORK)

    assert report.blocked == 1 and adapter.calls == []
    (attempt,) = attempts(sqlite_engine)
    assert attempt.status == "blocked" and "consent_missing" in attempt.error
    assert dispatch(sqlite_engine, adapter, NOON_NEW_YORK + timedelta(days=1)).claimed == 0


def test_stale_national_registry_blocks_telemarketing(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(123)], purpose="telemarketing", voice="prerecorded")
    adapter = FakeAdapter()
    dispatch(sqlite_engine, adapter, NOON_NEW_YORK, registry=FakeRegistry(synced_at=None))
    (attempt,) = attempts(sqlite_engine)
    assert attempt.status == "blocked" and "dnc_data_stale" in attempt.error and adapter.calls == []


def test_facts_loading_failure_dials_nothing(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(i) for i in range(100, 105)])
    adapter = FakeAdapter()
    report = dispatch(sqlite_engine, adapter, NOON_NEW_YORK, registry=FakeRegistry(fail=True))

    assert report.claimed == 5 and report.facts_error and adapter.calls == []
    assert {a.status for a in attempts(sqlite_engine)} == {"pending"}
    assert all(a.due_at == NOON_NEW_YORK + timedelta(seconds=60) for a in attempts(sqlite_engine))
    with Session(sqlite_engine) as session:
        assert session.execute(select(func.count()).select_from(Decision)).scalar_one() == 0


def test_campaign_hours_narrow_an_allow(sqlite_engine):
    # The gate allows at 12:00 EDT; the campaign opens at 14:00 local.
    running_campaign(sqlite_engine, [new_york_phone(123)], settings={"hours": "14:00-18:00"})
    adapter = FakeAdapter()
    report = dispatch(sqlite_engine, adapter, NOON_NEW_YORK)

    assert report.waiting_for_campaign_hours == 1 and adapter.calls == []
    (attempt,) = attempts(sqlite_engine)
    assert attempt.status == "pending" and attempt.error.startswith("campaign_hours")
    assert attempt.due_at == datetime(2026, 7, 15, 18, 0, tzinfo=timezone.utc)

    report = dispatch(sqlite_engine, adapter, attempt.due_at)
    (attempt,) = attempts(sqlite_engine)
    assert report.dialed == 1
    # The allow lasts until the campaign closes (18:00 EDT), before the legal window does.
    assert attempt.allow_expires_at == datetime(2026, 7, 15, 22, 0, tzinfo=timezone.utc)


def test_carrier_refusal_marks_the_attempt_failed_with_its_message(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(123)])
    adapter = FakeAdapter(refuse_with=CarrierError("21211: invalid 'To' phone number", status=400))
    report = dispatch(sqlite_engine, adapter, NOON_NEW_YORK)
    (attempt,) = attempts(sqlite_engine)
    assert report.carrier_failed == 1
    assert attempt.status == "failed" and "21211" in attempt.error and attempt.carrier_id is None


def test_max_concurrent_limits_the_batch(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(i) for i in range(100, 110)],
                     settings={"max_concurrent": 3, "cps": 100})
    adapter = FakeAdapter()
    assert dispatch(sqlite_engine, adapter, NOON_NEW_YORK).dialed == 3
    # Three are still dialing: no line is free.
    assert dispatch(sqlite_engine, adapter, NOON_NEW_YORK + timedelta(seconds=5)).claimed == 0
    assert len(adapter.calls) == 3


def test_cps_limits_each_window_and_spaces_requests(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(i) for i in range(100, 110)],
                     settings={"max_concurrent": 100, "cps": 1})
    adapter, slept = FakeAdapter(), []
    clock = [0.0]

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += seconds

    report = dispatch_once(sqlite_engine, adapter, worker_id="w1", now=NOON_NEW_YORK, pack=PACK,
                           registry=FakeRegistry(), config=DispatchConfig(pacing_window_seconds=2.0),
                           sleep=sleep, monotonic=lambda: clock[0])
    assert report.dialed == 2                               # 1 cps × 2 s window
    # The second call waits 1/cps, paced at PACE_SHARE of it (headroom for late requests).
    assert slept == [pytest.approx(1.0 / PACE_SHARE, abs=1e-5)]
    # Within the same window the budget is spent.
    assert dispatch(sqlite_engine, adapter, NOON_NEW_YORK + timedelta(seconds=1), pacing_window_seconds=2.0).claimed == 0
    assert dispatch(sqlite_engine, adapter, NOON_NEW_YORK + timedelta(seconds=3), pacing_window_seconds=2.0).dialed == 2


def test_retry_policy_schedules_the_next_attempt_through_the_gate(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(123)],
                     settings={"retry": {"no-answer": {"delay_seconds": 9 * 3600, "max_attempts": 2}}})
    adapter = FakeAdapter()
    dispatch(sqlite_engine, adapter, NOON_NEW_YORK)
    sid = adapter.calls[0][0]
    adapter.statuses[sid] = "no-answer"
    # The webhook never came: the reaper asks the carrier once the call's lease is over.
    later = NOON_NEW_YORK + timedelta(hours=1)
    reap(sqlite_engine, adapter, now=later, call_lease_seconds=1800)

    first, second = attempts(sqlite_engine)
    assert (first.status, first.outcome) == ("completed", "no-answer")
    assert (second.status, second.attempt_no) == ("pending", 2)
    assert second.due_at == later + timedelta(hours=9)
    # At its due time (22:00 EDT: the window has closed) the retry is deferred by the gate.
    report = dispatch(sqlite_engine, adapter, second.due_at)
    assert report.deferred == 1 and len(adapter.calls) == 1

    # The rule allows two attempts in all: the second one ending does not create a third.
    with session_scope(sqlite_engine) as session:
        retry = session.get(Attempt, second.id)
        retry.outcome = "no-answer"
        assert schedule_retry(session, retry, later) is None
        first_again = session.get(Attempt, first.id)
        assert schedule_retry(session, first_again, later).id == second.id     # idempotent


def test_outcome_without_a_rule_is_not_retried(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(123)],
                     settings={"retry": {"busy": {"delay_seconds": 1800, "max_attempts": 3}}})
    with session_scope(sqlite_engine) as session:
        attempt = session.execute(select(Attempt)).scalar_one()
        attempt.outcome = "no-answer"
        assert schedule_retry(session, attempt, NOON_NEW_YORK) is None


@pytest.mark.parametrize("at,verdict", [(NOON_NEW_YORK, "allow"), (LATE_NEW_YORK, "defer")])
def test_replay_of_a_dispatch_decision_is_identical(sqlite_engine, at, verdict):
    running_campaign(sqlite_engine, ["212.555.0123", "(305) 555-0123"], at=at)
    report = dispatch(sqlite_engine, FakeAdapter(), at)
    assert len(report.decision_ids) == 2
    for decision_id in report.decision_ids:
        result = replay_decision(decision_id, engine=sqlite_engine)
        assert result.identical, result.difference
        assert f'"verdict":"{verdict}"' in result.stored


def test_replay_of_a_blocked_decision_with_zip_and_state_is_identical(sqlite_engine):
    from dispatch_support import add_contacts, campaign_spec
    from outbound.campaigns import create_campaign, start_campaign, validate_campaign
    with session_scope(sqlite_engine) as session:
        campaign = create_campaign(session, validate_campaign(campaign_spec(purpose="telemarketing", voice="prerecorded")),
                                   actor="t", at=NOON_NEW_YORK)
        add_contacts(session, campaign.id, ["+12085550123"], zip_code="83201", state="id", line_type="mobile")
        start_campaign(session, campaign, actor="t", at=NOON_NEW_YORK)
    report = dispatch(sqlite_engine, FakeAdapter(), NOON_NEW_YORK)
    assert report.blocked == 1
    assert replay_decision(report.decision_ids[0], engine=sqlite_engine).identical


def test_stopped_campaign_claims_are_not_dialed(sqlite_engine):
    from outbound.campaigns import find_campaign, stop_campaign
    running_campaign(sqlite_engine, [new_york_phone(123)])
    adapter = FakeAdapter()
    with session_scope(sqlite_engine) as session:
        stop_campaign(session, find_campaign(session, "c1"), actor="t", at=NOON_NEW_YORK)
    assert dispatch(sqlite_engine, adapter, NOON_NEW_YORK).claimed == 0
    assert adapter.calls == [] and attempts(sqlite_engine)[0].status == "cancelled"


def test_same_number_twice_in_a_batch_counts_the_first_call_against_the_cap(sqlite_engine):
    # Florida caps calls at 3 per 24 hours; the number is in four campaigns at once.
    for name in ("fl1", "fl2", "fl3", "fl4"):
        running_campaign(sqlite_engine, ["(305) 555-0123"], name=name)
    adapter = FakeAdapter()
    report = dispatch(sqlite_engine, adapter, NOON_NEW_YORK)
    assert (report.allowed, report.deferred) == (3, 1) and len(adapter.calls) == 3
    deferred = [a for a in attempts(sqlite_engine) if a.status == "pending"]
    assert deferred[0].due_at == NOON_NEW_YORK + timedelta(hours=24)
    for decision_id in report.decision_ids:
        assert replay_decision(decision_id, engine=sqlite_engine).identical


def test_contacts_imported_into_a_running_campaign_get_an_attempt(sqlite_engine):
    from dispatch_support import add_contacts
    from scheduler.housekeeping import housekeeping
    campaign_id = running_campaign(sqlite_engine, [new_york_phone(123)])
    with session_scope(sqlite_engine) as session:
        add_contacts(session, campaign_id, [new_york_phone(124)])
    report = housekeeping(sqlite_engine, FakeAdapter(), now=NOON_NEW_YORK)
    assert report.campaigns_completed == 0
    assert [(a.contact_id, a.status) for a in attempts(sqlite_engine)] == [(1, "pending"), (2, "pending")]


def test_status_counts_decisions_by_verdict_and_reason(sqlite_engine):
    from outbound.campaigns import campaign_status, find_campaign
    running_campaign(sqlite_engine, [new_york_phone(i) for i in range(100, 103)], at=LATE_NEW_YORK)
    dispatch(sqlite_engine, FakeAdapter(), LATE_NEW_YORK)
    with Session(sqlite_engine) as session:
        status = campaign_status(session, find_campaign(session, "c1"))
    assert status.attempts == {"pending": 3}
    assert status.decisions == {"defer": 3}
    assert status.deferred_by_reason == {"calling_window": 3} and status.blocked_by_reason == {}


# --- the last check before sending ------------------------------------------------------------

def _opt_out_during_send(db_url, phone, how):
    """A carrier hook: while the batch's first request is being sent, another process commits an
    opt-out (a STOP, or an entry on the internal list) for `phone`, after the batch was decided."""
    from consent import dnc, records
    from consent.ledger_io import RevocationVia
    from consent.types import Channel
    from outbound import audit

    def opt_out(request):
        if getattr(opt_out, "done", False):
            return
        opt_out.done = True
        other = make_engine(db_url)
        try:
            with session_scope(other) as session:
                if how == "stop":
                    records.revoke(session, phone, {Channel.VOICE, Channel.SMS}, RevocationVia.SMS_STOP,
                                   NOON_NEW_YORK, actor="carrier", at=NOON_NEW_YORK, audit=audit.append)
                else:
                    dnc.add_internal(session, phone, reason="asked by phone", actor="agent", at=NOON_NEW_YORK,
                                     audit=audit.append)
        finally:
            other.dispose()
    return opt_out


@pytest.mark.parametrize(("how", "code"), [("stop", "consent_revoked"), ("internal", "dnc_internal")])
@pytest.mark.parametrize("when", ["after_the_decision", "during_the_previous_request"])
def test_an_opt_out_committed_between_decide_and_send_sends_nothing_and_stores_a_block(engine, db_url, monkeypatch,
                                                                                      how, code, when):
    from scheduler import dispatch as dispatching
    second = "+12125550002"
    opt_out = _opt_out_during_send(db_url, second, how)
    if when == "after_the_decision":
        # Committed once the batch's decisions are, before the sending step checks again.
        mark_slice = dispatching._Sender._mark_slice
        monkeypatch.setattr(dispatching._Sender, "_mark_slice",
                            lambda self, items, at: (opt_out(None), mark_slice(self, items, at)))
        running_campaign(engine, [new_york_phone(1), new_york_phone(2)])
        adapter = FakeAdapter()
    else:
        # At 1 call per second each request is its own sending step, checked just before it.
        running_campaign(engine, [new_york_phone(1), new_york_phone(2)], settings={"cps": 1})
        adapter = FakeAdapter(before_call=opt_out)
    report = dispatch(engine, adapter, NOON_NEW_YORK)

    assert report.allowed == 2 and report.dialed == 1 and report.blocked_before_send == 1
    assert [request.to for _sid, request in adapter.calls] == ["+12125550001"]
    first, blocked = attempts(engine)
    assert (blocked.status, blocked.carrier_id, blocked.dispatched_at) == ("blocked", None, None)
    assert code in blocked.error
    with Session(engine) as session:
        verdicts = [d.verdict for d in session.execute(select(Decision).where(
            Decision.attempt_id == blocked.id).order_by(Decision.decided_at)).scalars()]
        latest = session.get(Decision, blocked.decision_id)
    assert verdicts == ["allow", "block"] and latest.verdict == "block" and f'"code":"{code}"' in latest.decision
    # The block was made by the gate on the facts it stored: it replays byte for byte.
    result = replay_decision(latest.id, engine=engine)
    assert result.identical, result.difference


def test_a_marked_attempt_whose_sending_lease_ran_out_is_left_to_the_reaper_not_sent(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(1), new_york_phone(2)])
    clock = [0.0]
    # The worker stalls for 3 s in the first request; both were marked `sending` in one step.
    adapter = FakeAdapter(before_call=lambda request: clock.__setitem__(0, clock[0] + 3.0))
    report = dispatch_once(sqlite_engine, adapter, worker_id="w1", now=NOON_NEW_YORK, pack=PACK,
                           registry=FakeRegistry(), sleep=lambda _seconds: None, monotonic=lambda: clock[0],
                           config=DispatchConfig(send_lease_seconds=2, callback_window_seconds=3))
    assert report.dialed == 1 and len(adapter.calls) == 1
    first, second = attempts(sqlite_engine)
    assert (second.status, second.carrier_id) == ("sending", None)      # the reaper settles it


def test_the_callback_window_must_outlast_the_sending_lease():
    with pytest.raises(ValueError, match="callback_window_seconds"):
        DispatchConfig(send_lease_seconds=120, callback_window_seconds=60)


def test_the_last_check_lets_an_attempt_through_when_no_opt_out_came(sqlite_engine):
    running_campaign(sqlite_engine, [new_york_phone(1), new_york_phone(2)])
    report = dispatch(sqlite_engine, FakeAdapter(), NOON_NEW_YORK)
    assert report.dialed == 2 and report.blocked_before_send == 0
    with Session(sqlite_engine) as session:
        assert session.execute(select(func.count()).select_from(Decision)).scalar_one() == 2


def test_every_callback_url_names_its_attempt(sqlite_engine):
    from dispatch_support import grant_consent
    running_campaign(sqlite_engine, [new_york_phone(1)])
    grant_consent(sqlite_engine, [new_york_phone(2)], seller="texts")
    running_campaign(sqlite_engine, [new_york_phone(2)], name="texts", channel="sms", voice=None)
    adapter = FakeAdapter()
    dispatch(sqlite_engine, adapter, NOON_NEW_YORK)
    by_to = {request.to: request for _sid, request in adapter.calls}
    call, text = by_to["+12125550001"], by_to["+12125550002"]
    assert call.status_callback == f"http://localhost:8000/v1/twilio/call-status?attempt={call.attempt_id}"
    assert call.amd_callback == f"http://localhost:8000/v1/twilio/amd?attempt={call.attempt_id}"
    assert text.status_callback == f"http://localhost:8000/v1/twilio/sms-status?attempt={text.attempt_id}"
