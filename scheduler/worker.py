"""The worker process: APScheduler interval and cron jobs around the dispatch loop.

APScheduler is the timer, not the record of truth (DESIGN.md, "Storage and scale"): the jobs are
in memory, with fixed ids, and every piece of work lives in the attempts table. A duplicated or
missed tick costs nothing but time; `max_instances=1` keeps a slow tick from overlapping itself
and `coalesce=True` turns a backlog of missed ticks into one.

    dispatch       every 2 s    claim, decide, store, dial
    reaper         every 15 s   expired claims back to the gate; sending/dialing attempts reconciled
    housekeeping   every 60 s   queued-call expiry; campaigns with nothing left are completed
    transfers      every 2 s    callers on hold past their wait: told, and a callback offered
    opt-outs       every 5 s    opt-outs journaled while the database was unavailable are stored
                                (`outbound.opt_out_journal`; at start too)
    window-openings  cron :00 :15 :30 :45   runs dispatch at once when windows open

The clock is injectable so a simulation can run the worker on simulated time.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy import Engine

from consent.rules import RulePack, load_pack
from outbound import transfers
from outbound.db import session_scope
from outbound.journaled_opt_outs import apply_journal
from outbound.settings import get_settings
from scheduler.claims import reap
from scheduler.dispatch import DispatchConfig, dispatch_tick
from scheduler.facts import NationalRegistry
from scheduler.housekeeping import housekeeping
from telephony.adapter import Adapter

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Intervals:
    dispatch: float = 2.0
    reaper: float = 15.0
    housekeeping: float = 60.0
    transfers: float = 2.0
    opt_outs: float = 5.0


@dataclass
class Worker:
    engine: Engine
    adapter: Adapter
    registry: NationalRegistry
    clock: Clock = utc_now
    pack: RulePack = field(default_factory=load_pack)
    worker_id: str = field(default_factory=default_worker_id)
    config: DispatchConfig = DispatchConfig()
    intervals: Intervals = field(default_factory=Intervals)
    data_dir: Path | None = None          # where the opt-out journal is; default: the settings'

    # -- the jobs (each also callable on its own: tests and simulations drive them directly) --

    def dispatch_tick(self):
        report = dispatch_tick(self.engine, self.adapter, worker_id=self.worker_id, clock=self.clock,
                               pack=self.pack, registry=self.registry, config=self.config)
        # The simulator hands over its carrier events when asked (`advance`); after dispatch,
        # so the carrier ids the events name are already recorded.
        advance = getattr(self.adapter, "advance", None)
        if advance is not None:
            advance(self.clock())
        if report.claimed:
            log.info("dispatch: claimed %d, allowed %d, deferred %d, blocked %d, dialed %d%s",
                     report.claimed, report.allowed, report.deferred, report.blocked, report.dialed,
                     f", facts error: {report.facts_error}" if report.facts_error else "")
        return report

    def reaper_tick(self):
        return reap(self.engine, self.adapter, now=self.clock(), call_lease_seconds=self.config.call_lease_seconds,
                    callback_window_seconds=self.config.callback_window_seconds)

    def housekeeping_tick(self):
        return housekeeping(self.engine, self.adapter, now=self.clock())

    def transfers_tick(self) -> int:
        """Callers on hold past their campaign's wait are told and offered a callback (Twilio's
        hold-audio URL does this too; a caller whose hold audio is not re-fetched must not wait
        for ever)."""
        with session_scope(self.engine) as session:
            return transfers.sweep(session, at=self.clock(), public_url=self.config.callbacks.base,
                                   adapter=self.adapter)

    def opt_outs_tick(self) -> int:
        """Store the opt-outs the webhooks journaled while the database could not take them
        (each once; the confirmation text goes out through this worker's adapter)."""
        data_dir = self.data_dir or get_settings().data_dir
        return apply_journal(data_dir, self.engine, adapter=self.adapter, clock=self.clock)

    # -- the scheduler ---------------------------------------------------------------------------

    def build_scheduler(self) -> BlockingScheduler:
        scheduler = BlockingScheduler(timezone=timezone.utc, job_defaults={
            "max_instances": 1, "coalesce": True, "misfire_grace_time": None})
        for job_id, func, seconds in (("dispatch", self.dispatch_tick, self.intervals.dispatch),
                                      ("reaper", self.reaper_tick, self.intervals.reaper),
                                      ("housekeeping", self.housekeeping_tick, self.intervals.housekeeping),
                                      ("transfers", self.transfers_tick, self.intervals.transfers),
                                      ("opt-outs", self.opt_outs_tick, self.intervals.opt_outs)):
            # next_run_time now: a restarted worker reaps and dispatches at once, not after a period.
            scheduler.add_job(func, "interval", seconds=seconds, id=job_id, replace_existing=True,
                              next_run_time=datetime.now(timezone.utc))
        # Legal windows and campaign hours open on the hour or the quarter hour, local time, and
        # every US zone is a whole number of hours from UTC: at those instants the contacts that
        # were deferred until the opening fall due together, so dispatch runs at once rather than
        # up to an interval later. A nudge, not a second dispatch job: ticks never overlap.
        scheduler.add_job(self._nudge_dispatch, "cron", args=(scheduler,), minute="0,15,30,45", second=0,
                          id="window-openings", replace_existing=True)
        return scheduler

    @staticmethod
    def _nudge_dispatch(scheduler) -> None:
        scheduler.modify_job("dispatch", next_run_time=datetime.now(timezone.utc))

    def run(self) -> None:
        """Block until SIGTERM or SIGINT; a tick in progress finishes before the process exits
        (its attempts are then either decided and committed, or still claimed and reaped later)."""
        scheduler = self.build_scheduler()

        def stop(signum, _frame) -> None:
            log.info("worker %s: signal %s, shutting down after the running ticks", self.worker_id, signum)
            scheduler.shutdown(wait=False)

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        log.info("worker %s started", self.worker_id)
        try:
            scheduler.start()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            log.info("worker %s stopped", self.worker_id)
