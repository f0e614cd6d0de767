"""The worker's APScheduler jobs: fixed ids, and window openings pull the next dispatch forward;
a dispatch tick claims again while the gate only held attempts back."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from consent.dnc import add_internal
from outbound import audit
from outbound.db import session_scope
from dispatch_support import (
    LATE_NEW_YORK, NOON_NEW_YORK, FakeAdapter, FakeRegistry, new_york_phone, running_campaign,
)
from scheduler.dispatch import DispatchConfig
from scheduler.worker import Intervals, Worker


def test_the_jobs_have_fixed_ids_and_window_openings_run_on_the_quarter_hour(sqlite_engine):
    worker = Worker(engine=sqlite_engine, adapter=FakeAdapter(), registry=FakeRegistry())
    scheduler = worker.build_scheduler()
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"dispatch", "reaper", "housekeeping", "transfers", "opt-outs", "window-openings"}
    assert all(isinstance(jobs[name].trigger, IntervalTrigger)
               for name in ("dispatch", "reaper", "housekeeping", "transfers", "opt-outs"))
    openings = jobs["window-openings"].trigger
    assert isinstance(openings, CronTrigger)
    after = datetime(2026, 3, 8, 6, 59, 59, tzinfo=timezone.utc)
    fires = [after := openings.get_next_fire_time(None, after + timedelta(seconds=1)) for _ in range(3)]
    assert [f.strftime("%H:%M:%S") for f in fires] == ["07:00:00", "07:15:00", "07:30:00"]


def test_a_window_opening_moves_the_next_dispatch_to_now(sqlite_engine):
    worker = Worker(engine=sqlite_engine, adapter=FakeAdapter(), registry=FakeRegistry(),
                    intervals=Intervals(dispatch=3600))
    scheduler = worker.build_scheduler()
    far = datetime.now(timezone.utc) + timedelta(hours=1)
    scheduler.modify_job("dispatch", next_run_time=far)
    before = datetime.now(timezone.utc)
    openings = scheduler.get_job("window-openings")
    openings.func(*openings.args)
    moved = scheduler.get_job("dispatch").next_run_time
    assert before <= moved < far


# --- one dispatch tick ------------------------------------------------------------------------

def _worker(engine, adapter, registry, now):
    return Worker(engine=engine, adapter=adapter, registry=registry, clock=lambda: now,
                  config=DispatchConfig(batch_size=50))


def test_a_tick_decides_every_due_deferral_not_one_pacing_budget(sqlite_engine):
    # cps 1 and a 2 s tick: two dials per tick. At 22:00 in New York every attempt defers and
    # dials nothing, so the tick goes on claiming until its batch is used or nothing is due.
    running_campaign(sqlite_engine, [new_york_phone(i) for i in range(100, 112)], at=LATE_NEW_YORK,
                     settings={"cps": 1, "max_concurrent": 5})
    report = _worker(sqlite_engine, FakeAdapter(), FakeRegistry(), LATE_NEW_YORK).dispatch_tick()
    assert (report.claimed, report.deferred, report.dialed) == (12, 12, 0)
    assert len(set(report.decision_ids)) == 12


def test_a_tick_stops_at_the_first_round_that_dials(sqlite_engine):
    # Contacts on the internal list (blocked) among callable ones, in due order: rounds of two go
    # on while they only block; the round that dials ends the tick, though it blocked one too.
    phones = [new_york_phone(i) for i in range(100, 110)]
    listed = [phones[i] for i in (0, 1, 2, 4)]
    running_campaign(sqlite_engine, phones, settings={"cps": 1, "max_concurrent": 5})
    with session_scope(sqlite_engine) as session:
        for phone in listed:
            add_internal(session, phone, reason="asked", actor="test", at=NOON_NEW_YORK, audit=audit.append)
    adapter = FakeAdapter()
    report = _worker(sqlite_engine, adapter, FakeRegistry(), NOON_NEW_YORK).dispatch_tick()
    assert (report.claimed, report.blocked, report.dialed) == (4, 3, 1)
    assert len(adapter.calls) == 1
