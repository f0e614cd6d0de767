"""Decision before dial, at most once, across crashes and processes (DESIGN.md, "Invariants").

Workers are real processes (tests/crash_runner.py) dialing through an O_APPEND log, so every
dial is on record even when its process is killed the next instant.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from outbound.db import ensure_schema, make_engine
from outbound.models import Attempt, Campaign, Contact
from dispatch_support import new_york_phone, read_dial_log, running_campaign

RUNNER = Path(__file__).resolve().parent / "crash_runner.py"
FINAL = {"completed", "failed", "blocked", "cancelled"}


def start_worker(db_url: str, dial_log: Path, name: str, t0: float, max_seconds: float = 90,
                 *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(RUNNER), db_url, str(dial_log), name, repr(t0), str(max_seconds),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_dials(dial_log: Path, count: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(read_dial_log(dial_log)) < count:
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the worker dialed too slowly"
        time.sleep(0.01)


def finish(process: subprocess.Popen, timeout: float = 120) -> None:
    _out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err.decode()[-3000:]


def check_at_most_once(engine, dial_log: Path, contacts: int) -> dict:
    dials = read_dial_log(dial_log)
    per_attempt = Counter(dial["attempt_id"] for dial in dials)
    assert [a for a, n in per_attempt.items() if n > 1] == [], "an attempt was dialed twice"
    per_number = Counter(dial["to"] for dial in dials)
    assert [n for n, k in per_number.items() if k > 1] == [], "a contact was called twice"
    sids = {dial["sid"]: dial["attempt_id"] for dial in dials}
    with Session(engine) as session:
        attempts = list(session.execute(select(Attempt)).scalars())
        contact_ids = set(session.execute(select(Contact.id)).scalars())
        assert session.execute(select(Campaign.status)).scalar_one() == "completed"
    assert {a.contact_id for a in attempts} == contact_ids, "a contact lost its attempt"
    assert all(a.status in FINAL | {"pending"} for a in attempts), Counter(a.status for a in attempts)
    for attempt in attempts:
        if attempt.carrier_id is not None:
            assert sids[attempt.carrier_id] == attempt.id          # the id is the carrier's own
        else:
            # Never recorded: never sent (a kill between the sending mark and the request is
            # looked up at the carrier, found nothing, and went back to the gate).
            assert attempt.id not in per_attempt, f"attempt#{attempt.id} was sent but its sid never recorded"
    return {"dials": len(dials), "statuses": Counter(a.status for a in attempts),
            "unknown": sum(a.outcome == "unknown" for a in attempts)}


def test_kill_9_mid_campaign_then_restart_loses_nothing_and_dials_nothing_twice(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'outbound.db'}"
    engine = make_engine(db_url)
    ensure_schema(engine)
    contacts = 150
    running_campaign(engine, [new_york_phone(i) for i in range(1000, 1000 + contacts)],
                     settings={"cps": 100, "max_concurrent": 40})
    dial_log, t0 = tmp_path / "dials.jsonl", time.time()

    # Ten kills, each after a random number of further dials (a kill lands anywhere in a tick:
    # deciding, marking, requesting, recording).
    rng = random.Random(9)
    kill_after = 0
    for round_number in range(10):
        kill_after += rng.randint(3, 12)
        worker = start_worker(db_url, dial_log, f"w{round_number}", t0)
        wait_for_dials(dial_log, kill_after, worker)
        time.sleep(rng.uniform(0, 0.05))
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        kill_after = len(read_dial_log(dial_log))
    finish(start_worker(db_url, dial_log, "final", t0))

    result = check_at_most_once(engine, dial_log, contacts)
    print("kill -9 run:", result)
    # Nothing lost: every contact was dialed exactly once, none is left unknown.
    assert result["dials"] == contacts and result["unknown"] == 0
    engine.dispose()


@pytest.mark.postgres
def test_three_workers_on_one_postgres_database_never_dial_the_same_attempt(postgres_schema_url, tmp_path):
    engine = make_engine(postgres_schema_url)
    ensure_schema(engine)
    contacts = 300
    running_campaign(engine, [new_york_phone(i) for i in range(1000, 1000 + contacts)],
                     settings={"cps": 100, "max_concurrent": 1000})
    dial_log, t0 = tmp_path / "dials.jsonl", time.time()
    workers = [start_worker(postgres_schema_url, dial_log, f"pg{n}", t0) for n in range(3)]
    for worker in workers:
        finish(worker)

    result = check_at_most_once(engine, dial_log, contacts)
    assert result["dials"] == contacts and result["unknown"] == 0
    dialers = Counter(dial["sid"].split("-")[1] for dial in read_dial_log(dial_log))
    assert len(dialers) >= 2, f"the work was not shared: {dialers}"
    engine.dispose()


def test_scheduled_worker_stops_cleanly_on_sigterm(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'outbound.db'}"
    engine = make_engine(db_url)
    ensure_schema(engine)
    running_campaign(engine, [new_york_phone(i) for i in range(1000, 1100)], settings={"cps": 10})
    dial_log = tmp_path / "dials.jsonl"
    worker = start_worker(db_url, dial_log, "sched", time.time(), 90, "scheduler")
    wait_for_dials(dial_log, 5, worker)
    worker.send_signal(signal.SIGTERM)
    _out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err.decode()[-3000:]
    # Whatever the interrupted tick had sent is recorded; nothing is left claimed by a clean stop.
    with Session(engine) as session:
        statuses = Counter(session.execute(select(Attempt.status)).scalars())
        recorded = set(session.execute(select(Attempt.carrier_id).where(Attempt.carrier_id.is_not(None))).scalars())
    assert statuses["claimed"] == 0
    assert {dial["sid"] for dial in read_dial_log(dial_log)} == recorded
    engine.dispose()


# --- crash loops: nothing lost, nothing sent twice ---------------------------------------------

class WorkerKilled(BaseException):
    """The worker dies here: nothing after this point of its tick happens (not even a finally
    that would record carrier ids, which a kill -9 would not run either)."""


class CrashingCarrier:
    """The simulator as the carrier, outliving the workers it serves: it kills the current worker
    at chosen carrier requests, just before the request or just after the carrier took it, and
    keeps every request on record (per attempt and number) for the checks."""

    def __init__(self, simulator, kill_at: dict[int, str]):
        self.simulator, self.kill_at = simulator, kill_at
        self.requests: list[tuple[int, str, str]] = []          # (attempt id, to, sid)
        self.dead = False
        self.kills = 0

    def __getattr__(self, name):
        return getattr(self.simulator, name)

    def _request(self, send, request):
        where = self.kill_at.get(len(self.requests) + self.kills)
        if where == "before_request":
            self._kill()
        answer = send(request)
        self.requests.append((request.attempt_id, request.to, answer.sid))
        if where == "after_request":
            self._kill()
        return answer

    def _kill(self):
        self.kills += 1
        self.dead = True
        raise WorkerKilled()

    def place_call(self, request):
        return self._request(self.simulator.place_call, request)

    def send_sms(self, request):
        return self._request(self.simulator.send_sms, request)


@pytest.mark.parametrize("carrier_kind", ["simulator", "twilio_mock"])
def test_crash_loop_loses_nothing_and_sends_nothing_twice(tmp_path, monkeypatch, request, carrier_kind):
    """3,000 contacts, the worker killed at 14 random points; the carrier (the simulator with
    its webhooks, or the real Twilio adapter against a Twilio-shaped mock that sends none)
    outlives every worker."""
    import contextlib
    import random
    from datetime import timedelta

    from consent.rules import load_pack
    from dispatch_support import NOON_NEW_YORK, FakeRegistry
    from outbound.models import AuditEvent
    from scheduler import dispatch
    from scheduler.dispatch import DispatchConfig
    from scheduler.worker import Worker
    from outbound.carrier_events import PendingEvent, handle_webhook, handle_webhook_batch
    from telephony.call_requests import handle_carrier_event
    from telephony.simulator import SimulationProfile, SimulatorAdapter
    from telephony.twilio_adapter import TwilioAdapter
    from twilio_mock import TwilioMock, serving

    # In memory-backed storage when there is one: the loop commits some 15,000 carrier events,
    # and what it checks is the order of commits, not the disk's flush rate.
    shm = Path("/dev/shm")
    db_dir = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path
    request.addfinalizer(lambda: shutil.rmtree(db_dir, ignore_errors=True))
    engine = make_engine(f"sqlite:///{db_dir / 'outbound.db'}")
    ensure_schema(engine)
    contacts = int(os.environ.get("CRASH_LOOP_CONTACTS", "3000"))
    # Three campaigns, each paced at the highest cps a campaign may have (requests are spaced in
    # wall time), so the 3,000 contacts take seconds, not half a minute.
    share = contacts // 3
    for part in range(3):
        running_campaign(engine, [new_york_phone(i) for i in range(part * share, (part + 1) * share)],
                         name=f"c{part}", settings={"cps": 100, "max_concurrent": 1000})
    clock = {"now": NOON_NEW_YORK}
    rng = random.Random(20)
    # At least 10 kills at random carrier requests, half just before one, half just after.
    kill_at = {n: rng.choice(("before_request", "after_request")) for n in sorted(rng.sample(range(10, contacts - 10), 14))}

    # Status events are applied in batches, as the webhook route's writer does under load.
    statuses: list[PendingEvent] = []

    def deliver(kind, params, at):
        if kind in ("call-status", "sms-status"):
            statuses.append(PendingEvent(kind, params, at))
            return None
        flush_statuses()
        with Session(engine) as session:
            return handle_carrier_event(session, kind, params, at, adapter=simulator)

    def flush_statuses():
        batch, statuses[:] = list(statuses), []
        if not batch:
            return
        with Session(engine) as session:
            try:
                handle_webhook_batch(session, batch)
                return
            except Exception:
                session.rollback()
            for event in batch:                       # one by one, as the route falls back
                handle_webhook(session, event.kind, event.params, event.at)

    mock = None
    if carrier_kind == "simulator":
        # Short calls, so the campaign ends within a few simulated minutes.
        profile = SimulationProfile(ring_seconds=(2.0, 8.0), busy_seconds=(1.0, 3.0), talk_seconds=(10.0, 25.0),
                                    greeting_seconds=(2.0, 5.0), voicemail_seconds=(3.0, 8.0))
        simulator = SimulatorAdapter(7, deliver, clock=lambda: clock["now"], profile=profile)
        carrier = CrashingCarrier(simulator, kill_at)

        def advance():
            simulator.advance(clock["now"])
            flush_statuses()
    else:
        mock = TwilioMock(clock=lambda: clock["now"])
        stack = contextlib.ExitStack()
        request.addfinalizer(stack.close)
        base = stack.enter_context(serving(mock))
        carrier = CrashingCarrier(TwilioAdapter("AC" + "1" * 32, "token", api_base=base), kill_at)

        def advance():
            pass
    # Requests are spaced at 1/cps in wall time; the simulated clock needs no real waiting.
    monkeypatch.setitem(dispatch.dispatch_once.__kwdefaults__, "sleep", lambda _seconds: None)
    # A killed worker's pending carrier ids are never recorded: the finally that would is dead too.
    record = dispatch.record_carrier_ids
    monkeypatch.setattr(dispatch, "record_carrier_ids",
                        lambda *args: None if carrier.dead else record(*args))
    config = DispatchConfig(batch_size=200, lease_seconds=2, send_lease_seconds=2,
                            call_lease_seconds=60 if mock is None else 5, callback_window_seconds=5)
    pack, incarnation = load_pack(), 0

    def new_worker():
        carrier.dead = False
        return Worker(engine=engine, adapter=carrier, registry=FakeRegistry(), clock=lambda: clock["now"],
                      pack=pack, worker_id=f"w{incarnation}", config=config)

    worker = new_worker()
    for _tick in range(1000):
        try:
            worker.reaper_tick()
            worker.dispatch_tick()
            worker.housekeeping_tick()
        except WorkerKilled:
            incarnation += 1
            worker = new_worker()                 # a new process; the carrier lives on
        if not _campaign_running(engine):
            break
        clock["now"] += timedelta(seconds=1)
        advance()

    assert carrier.kills >= 10
    assert not _campaign_running(engine), "the campaign did not finish"
    per_attempt = Counter(attempt_id for attempt_id, _to, _sid in carrier.requests)
    per_number = Counter(to for _attempt_id, to, _sid in carrier.requests)
    assert [a for a, n in per_attempt.items() if n > 1] == [], "an attempt was sent twice"
    assert [n for n, k in per_number.items() if k > 1] == [], "a contact was called twice"
    assert len(per_number) == contacts, "a contact was never called: lost"
    if mock is not None:                      # the carrier's own record agrees
        assert set(Counter(created.to for created in mock.creates).values()) == {1}
        assert len(mock.creates) == contacts
    with Session(engine) as session:
        attempts = list(session.execute(select(Attempt)).scalars())
        looked_up = {event.subject for event in session.execute(select(AuditEvent).where(
            AuditEvent.action == "attempt.carrier_lookup")).scalars()}
    assert all(a.status in FINAL for a in attempts), Counter(a.status for a in attempts)
    sids = {sid: attempt_id for attempt_id, _to, sid in carrier.requests}
    for attempt in attempts:
        if attempt.carrier_id is not None:
            assert sids[attempt.carrier_id] == attempt.id
        assert attempt.outcome != "unknown" or f"attempt#{attempt.id}" in looked_up
    assert sum(a.outcome == "unknown" for a in attempts) == 0
    print(carrier_kind, "crash loop:", carrier.kills, "kills,", len(carrier.requests), "requests,",
          len(looked_up), "carrier lookups,", Counter(a.status for a in attempts))
    engine.dispose()


def _campaign_running(engine) -> bool:
    with Session(engine) as session:
        return "running" in set(session.execute(select(Campaign.status)).scalars())
