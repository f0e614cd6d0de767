"""SQLite under load: another writer holding the write lock never turns into a 500 or a crash.

The lock is held by a real second connection (`BEGIN IMMEDIATE`), as a list import or a worker
batch holds it, while the API or the worker writes.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError

from outbound.db import DatabaseBusy, is_database_busy, make_engine, retry_on_busy

BODY = {"name": "held", "channel": "sms", "purpose": "informational", "caller_id": "+12125550100",
        "script": "Your appointment is tomorrow. Reply STOP to opt out.", "settings": {"cps": 1}}


def hold_write_lock(database: str, seconds: float,
                    release_early: threading.Event | None = None) -> tuple[threading.Thread, threading.Event]:
    """Another process's writer: takes SQLite's write lock now and releases it after `seconds`,
    or as soon as `release_early` is set (in a thread, so the code under test runs meanwhile)."""
    holder = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE IF NOT EXISTS lock_holder (x)")
    holder.execute("INSERT INTO lock_holder VALUES (1)")
    released = threading.Event()

    def release() -> None:
        (release_early or threading.Event()).wait(seconds)
        holder.execute("ROLLBACK")
        holder.close()
        released.set()

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    return thread, released


@contextmanager
def write_lock_held(database: str, seconds: float):
    thread, released = hold_write_lock(database, seconds)
    try:
        yield released
    finally:
        thread.join()


@contextmanager
def write_lock_held_throughout(database: str):
    """The lock held until the block ends (however slow the machine is meanwhile)."""
    done = threading.Event()
    thread, _released = hold_write_lock(database, 300, release_early=done)
    try:
        yield
    finally:
        done.set()
        thread.join()


def _client(env_api_users, busy_timeout_ms: int) -> TestClient:
    from api import database
    from api.app import create_app
    from outbound.db import get_engine

    app = create_app()
    engine = make_engine(get_engine().url, sqlite_busy_timeout_ms=busy_timeout_ms)
    app.dependency_overrides[database.get_api_engine] = lambda: engine
    return TestClient(app, headers=env_api_users.headers("manager"), raise_server_exceptions=False)


def _database_file(env_api_users) -> str:
    return make_url(str(env_api_users.engine.url)).database


def test_post_campaign_waits_for_a_lock_released_within_the_bound_and_answers_201(env_api_users):
    client = _client(env_api_users, busy_timeout_ms=5_000)
    with write_lock_held(_database_file(env_api_users), seconds=1.0) as released:
        started = time.monotonic()
        response = client.post("/v1/campaigns", json=BODY)
        assert released.is_set(), "the request must have waited for the lock"
    assert response.status_code == 201, response.text
    assert time.monotonic() - started >= 0.9


def test_post_campaign_past_the_bound_answers_503_with_retry_after_never_500(env_api_users):
    client = _client(env_api_users, busy_timeout_ms=300)
    with write_lock_held_throughout(_database_file(env_api_users)):
        response = client.post("/v1/campaigns", json=BODY)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    detail = response.json()["detail"]
    assert "database is busy" in detail and "try again" in detail and "PostgreSQL" in detail
    assert "locked" not in detail.lower()
    # Nothing was half stored: the same request succeeds once the lock is free.
    assert client.post("/v1/campaigns", json=BODY).status_code == 201


def test_retry_on_busy_runs_the_transaction_again_once_the_lock_is_free(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'busy.db'}", sqlite_busy_timeout_ms=50)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x)")
    tries = []

    def write():
        tries.append(1)
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")

    with write_lock_held(str(tmp_path / "busy.db"), seconds=0.8):
        retry_on_busy(write, what="test")
    assert len(tries) > 1
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1


def test_retry_on_busy_gives_up_after_its_bound_with_a_clear_error(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'busy.db'}", sqlite_busy_timeout_ms=50)

    def write():
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x)")
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")

    with write_lock_held(str(tmp_path / "busy.db"), seconds=1.5):
        started = time.monotonic()
        with pytest.raises(DatabaseBusy, match="try again in a few seconds") as raised:
            retry_on_busy(write, what="test", deadline_seconds=0.5)
        assert time.monotonic() - started < 1.4
    assert is_database_busy(raised.value.__cause__)


def test_other_database_errors_are_not_retried(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    tries = []

    def write():
        tries.append(1)
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(OperationalError, match="no such table"):
        retry_on_busy(write)
    assert tries == [1]


def test_cli_past_the_bound_prints_a_clear_error_and_exits_75(outbound_env, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from outbound.db import ensure_schema, get_engine

    ensure_schema(get_engine())
    database = make_url(str(get_engine().url)).database
    outbound = Path(sys.executable).with_name("outbound")
    env = {**os.environ, "OUTBOUND_SQLITE_BUSY_TIMEOUT_MS": "300"}
    command = [str(outbound), "campaign", "create", "held", "--channel", "sms", "--purpose", "informational",
               "--caller-id", "+12125550100", "--script", "Reply STOP to opt out."]
    with write_lock_held_throughout(database):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 75, result.stderr
    assert "database is busy" in result.stderr and "try again" in result.stderr
    assert "Traceback" not in result.stderr and "locked" not in result.stderr.lower()
    assert subprocess.run(command, env=env, capture_output=True, text=True, timeout=60).returncode == 0


def test_a_dispatch_tick_waits_out_a_lock_taken_mid_batch_and_sends_and_records_every_call(tmp_path):
    from consent.rules import load_pack
    from dispatch_support import FakeAdapter, FakeRegistry, new_york_phone, running_campaign
    from outbound.db import ensure_schema, session_scope
    from outbound.models import Attempt
    from scheduler.dispatch import dispatch_once
    from sqlalchemy import select

    database = str(tmp_path / "outbound.db")
    engine = make_engine(f"sqlite:///{database}", sqlite_busy_timeout_ms=100)
    ensure_schema(engine)
    running_campaign(engine, [new_york_phone(i) for i in range(20)])
    holders = []

    def import_starts(_request) -> None:
        # On the 5th carrier request another writer takes the lock for 12 busy timeouts.
        if len(adapter.calls) == 4 and not holders:
            holders.append(hold_write_lock(database, seconds=1.2))

    adapter = FakeAdapter(before_call=import_starts)
    from dispatch_support import NOON_NEW_YORK
    report = dispatch_once(engine, adapter, worker_id="w1", now=NOON_NEW_YORK, pack=load_pack(),
                           registry=FakeRegistry())
    holders[0][0].join()
    assert report.dialed == 20 and len(adapter.calls) == 20
    with session_scope(engine) as session:
        rows = session.execute(select(Attempt.status, Attempt.carrier_id)).all()
    assert {status for status, _ in rows} == {"dialing"}
    assert sorted(sid for _, sid in rows) == sorted(sid for sid, _ in adapter.calls)
