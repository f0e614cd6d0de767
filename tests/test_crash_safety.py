"""Decision before dial, at most once, across crashes and processes (DESIGN.md, "Invariants").

Workers are real processes (tests/crash_runner.py) dialing through an O_APPEND log, so every
dial is on record even when its process is killed the next instant.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
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
            # Never recorded: either never sent, or killed between sending and recording; the
            # latter is the `unknown` outcome, never a second dial.
            assert attempt.id not in per_attempt or attempt.outcome == "unknown"
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

    for round_number, kill_after in enumerate((20, 60)):
        worker = start_worker(db_url, dial_log, f"w{round_number}", t0)
        wait_for_dials(dial_log, kill_after, worker)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    finish(start_worker(db_url, dial_log, "final", t0))

    result = check_at_most_once(engine, dial_log, contacts)
    print("kill -9 run:", result)
    # Every contact was dialed once, except those whose outcome a kill left unknown.
    assert result["dials"] >= contacts - result["unknown"]
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
