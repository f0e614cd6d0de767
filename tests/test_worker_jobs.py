"""The worker's APScheduler jobs: fixed ids, and window openings pull the next dispatch forward."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from dispatch_support import FakeAdapter, FakeRegistry
from scheduler.worker import Intervals, Worker


def test_the_jobs_have_fixed_ids_and_window_openings_run_on_the_quarter_hour(sqlite_engine):
    worker = Worker(engine=sqlite_engine, adapter=FakeAdapter(), registry=FakeRegistry())
    scheduler = worker.build_scheduler()
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"dispatch", "reaper", "housekeeping", "transfers", "window-openings"}
    assert all(isinstance(jobs[name].trigger, IntervalTrigger)
               for name in ("dispatch", "reaper", "housekeeping", "transfers"))
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
