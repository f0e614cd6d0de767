"""The hash-chained audit log: appends, verification, and every kind of tampering, on both backends."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
import typer
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import Session

from outbound import audit
from outbound.audit import GENESIS_HASH, append, canonical_json, event_hash, iso_utc, verify
from outbound.commands import audit_cmd
from outbound.db import ensure_schema, make_engine, session_scope
from outbound.models import AuditEvent, AuditHead

UTC = timezone.utc
T0 = datetime(2026, 7, 15, 16, 0, tzinfo=UTC)
EVENTS = AuditEvent.__table__
HEAD = AuditHead.__table__
CHAIN_LENGTH = 6


def append_events(engine, count: int, start: int = 1) -> None:
    with session_scope(engine) as session:
        for n in range(start, start + count):
            append(session, actor=f"user-{n % 2}", action="consent.record", subject=f"+1212555{n:04d}",
                   payload={"n": n, "channels": ["voice", "sms"], "note": "é ✓"},
                   at=T0 + timedelta(minutes=n, microseconds=n * 7))


@pytest.fixture
def chain(engine):
    """Six events, committed."""
    append_events(engine, CHAIN_LENGTH)
    return engine


def rows(engine) -> dict[int, dict]:
    with engine.connect() as connection:
        return {row.id: dict(row._mapping) for row in connection.execute(sa.select(EVENTS))}


def verify_on(engine) -> audit.VerifyResult:
    with Session(engine) as session:
        return verify(session)


# --- the chain --------------------------------------------------------------------------------

def test_appended_events_form_a_chain_from_the_genesis_hash(chain):
    stored = rows(chain)
    assert sorted(stored) == list(range(1, CHAIN_LENGTH + 1))
    assert stored[1]["prev_hash"] == GENESIS_HASH
    for n in range(2, CHAIN_LENGTH + 1):
        assert stored[n]["prev_hash"] == stored[n - 1]["hash"]
    with chain.connect() as connection:
        head = connection.execute(sa.select(HEAD)).one()
    assert (head.id, head.last_id, head.last_hash) == (1, CHAIN_LENGTH, stored[CHAIN_LENGTH]["hash"])


def test_a_batch_appended_at_once_continues_the_chain_exactly_as_single_appends_would(chain):
    batch = [audit.NewEvent(actor="scheduler", action="gate.decision", subject=f"d{n}",
                            payload={"n": n}, at=T0 + timedelta(hours=1, seconds=n)) for n in range(3)]
    with session_scope(chain) as session:
        ids = audit.append_many(session, batch)
        append(session, actor="x", action="after", subject=None, payload={}, at=T0 + timedelta(hours=2))
    assert ids == [CHAIN_LENGTH + 1, CHAIN_LENGTH + 2, CHAIN_LENGTH + 3]
    stored = rows(chain)
    for n, event in zip(ids, batch):
        assert stored[n]["hash"] == event_hash(id=n, at=event.at, actor=event.actor, action=event.action,
                                               subject=event.subject, payload=event.payload,
                                               prev_hash=stored[n - 1]["hash"])
    assert stored[CHAIN_LENGTH + 4]["prev_hash"] == stored[CHAIN_LENGTH + 3]["hash"]
    assert verify_on(chain).ok and verify_on(chain).events_checked == CHAIN_LENGTH + 4


def specified_hash(text: str) -> str:
    """HMAC-SHA256 under the test key (conftest sets OUTBOUND_AUDIT_KEY)."""
    return hmac.new(os.environ["OUTBOUND_AUDIT_KEY"].encode(), text.encode("utf-8"),
                    hashlib.sha256).hexdigest()


def test_the_hash_is_the_keyed_hmac_of_the_canonical_event_as_specified(chain):
    event = rows(chain)[2]
    document = {"id": 2, "at": iso_utc(event["at"]), "actor": event["actor"],
                "action": event["action"], "subject": event["subject"],
                "payload": json.loads(event["payload"]), "prev_hash": event["prev_hash"]}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert event["hash"] == specified_hash(text)
    assert event["hash"] != hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert '"at":"2026-07-15T16:02:00.000014Z"' in text


@given(event_id=st.integers(min_value=1, max_value=2**62), actor=st.text(), action=st.text(),
       subject=st.none() | st.text(),
       payload=st.dictionaries(st.text(), st.recursive(
           st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=8)),
       at=st.datetimes(timezones=st.just(UTC)))
def test_the_fast_hash_equals_the_specified_hash_on_any_content(event_id, actor, action, subject,
                                                                payload, at):
    # verify splices the stored payload text into the event; it must hash exactly like the spec.
    document = {"id": event_id, "at": iso_utc(at), "actor": actor, "action": action,
                "subject": subject, "payload": payload, "prev_hash": GENESIS_HASH}
    specified = specified_hash(canonical_json(document))
    assert event_hash(id=event_id, at=at, actor=actor, action=action, subject=subject,
                      payload=payload, prev_hash=GENESIS_HASH) == specified


def test_an_intact_chain_verifies(chain):
    result = verify_on(chain)
    assert (result.ok, result.events_checked, result.last_id, result.broken) == (
        True, CHAIN_LENGTH, CHAIN_LENGTH, None)
    assert result.rows.ok and result.rows.rows_checked == 0 and result.anchor is None


def test_an_empty_log_verifies(engine):
    assert verify_on(engine).ok


@pytest.mark.parametrize("at", [
    datetime(2026, 1, 1, tzinfo=UTC),                                    # no microseconds
    datetime(2026, 3, 8, 1, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
    datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
])
def test_instants_are_spelled_the_same_by_the_database_and_by_python(engine, at):
    # verify formats `at` in SQL for speed; append formats it in Python.
    with session_scope(engine) as session:
        append(session, actor="a", action="b", subject=None, payload={}, at=at)
    with Session(engine) as session:
        spelled = session.execute(sa.select(audit._at_iso_sql(engine.dialect.name))).scalar_one()
        assert spelled == iso_utc(at)
        assert verify(session).ok


def test_append_refuses_a_naive_instant(session):
    with pytest.raises(ValueError, match="naive datetime"):
        append(session, actor="a", action="b", subject=None, payload={}, at=datetime(2026, 7, 15))


def test_payload_instants_are_stored_in_utc_and_unknown_types_are_refused(session):
    event = append(session, actor="a", action="b", subject=None, at=T0,
                   payload={"at": T0.astimezone(timezone(timedelta(hours=2))), "day": date(2026, 7, 4)})
    assert event.payload == '{"at":"2026-07-15T16:00:00.000000Z","day":"2026-07-04"}'
    with pytest.raises(TypeError, match="cannot store set"):
        append(session, actor="a", action="b", subject=None, payload={"x": {1, 2}}, at=T0)


def test_append_leaves_the_commit_to_the_caller(engine):
    with pytest.raises(RuntimeError):
        with session_scope(engine) as session:
            append(session, actor="a", action="b", subject=None, payload={}, at=T0)
            raise RuntimeError("the change being audited failed")
    assert rows(engine) == {}
    append_events(engine, 1)
    assert sorted(rows(engine)) == [1] and verify_on(engine).ok


def test_concurrent_appenders_never_fork_the_chain(engine):
    # Four writers in separate sessions: the head row lock (PostgreSQL) or the write lock taken
    # by the first statement (SQLite) must queue them, giving ids 1..N in one unbroken chain.
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for n in range(10):
                with session_scope(engine) as session:
                    append(session, actor=f"worker-{worker}", action="test", subject=str(n),
                           payload={"n": n}, at=T0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(rows(engine)) == list(range(1, 41))
    assert verify_on(engine).ok


# --- tampering --------------------------------------------------------------------------------

def update(connection, event_id: int, **values) -> None:
    connection.execute(sa.update(EVENTS).where(EVENTS.c.id == event_id).values(**values))


def delete(connection, *event_ids: int) -> None:
    connection.execute(sa.delete(EVENTS).where(EVENTS.c.id.in_(event_ids)))


def move_head(connection, last_id: int, last_hash: str) -> None:
    connection.execute(sa.update(HEAD).values(last_id=last_id, last_hash=last_hash))


def renumber(connection, ids: list[int], shift: int) -> None:
    # One row at a time, in the order that never collides with a primary key still in use.
    for event_id in sorted(ids, reverse=shift > 0):
        update(connection, event_id, id=event_id + shift)


def forged(event_id: int, prev_hash: str, *, valid_hash: bool = True, **content) -> dict:
    """A row an attacker writes; with valid_hash, its hash is computed exactly as append does."""
    row = {"id": event_id, "at": T0, "actor": "intruder", "action": "consent.record",
           "subject": "+12125550000", "payload": {"forged": True}, "prev_hash": prev_hash, **content}
    digest = event_hash(**row) if valid_hash else "f" * 64
    return {**row, "payload": canonical_json(row["payload"]), "hash": digest}


def edit_payload(connection, stored):
    update(connection, 3, payload='{"n":3,"channels":["voice"],"note":"é ✓"}')


def edit_actor(connection, stored):
    update(connection, 4, actor="someone-else")


def edit_instant(connection, stored):
    update(connection, 2, at=stored[2]["at"] + timedelta(microseconds=1))


def edit_and_rehash_one_row(connection, stored):
    row = {**stored[3], "actor": "someone-else"}
    update(connection, 3, actor="someone-else", hash=event_hash(
        id=3, at=row["at"], actor=row["actor"], action=row["action"], subject=row["subject"],
        payload=json.loads(row["payload"]), prev_hash=row["prev_hash"]))


def delete_middle_row(connection, stored):
    delete(connection, 3)


def delete_middle_row_and_renumber(connection, stored):
    delete(connection, 3)
    renumber(connection, [4, 5, 6], -1)
    move_head(connection, 5, stored[6]["hash"])


def delete_last_row(connection, stored):
    delete(connection, 6)


def delete_last_two_rows(connection, stored):
    delete(connection, 5, 6)


def delete_last_rows_and_move_the_head_to_a_wrong_hash(connection, stored):
    # (Moving it to event 4's true hash would go unseen: see the module docstring of audit.py.)
    delete(connection, 5, 6)
    move_head(connection, 4, stored[3]["hash"])


def delete_every_row(connection, stored):
    delete(connection, *stored)


def insert_forged_row_renumbering_the_rest(connection, stored):
    renumber(connection, [4, 5, 6], +1)
    connection.execute(sa.insert(EVENTS).values(**forged(4, stored[3]["hash"])))
    move_head(connection, 7, stored[6]["hash"])


def insert_forged_row_with_a_made_up_hash(connection, stored):
    renumber(connection, [4, 5, 6], +1)
    connection.execute(sa.insert(EVENTS).values(**forged(4, stored[3]["hash"], valid_hash=False)))
    move_head(connection, 7, stored[6]["hash"])


def replace_a_row_with_a_forged_one(connection, stored):
    delete(connection, 4)
    connection.execute(sa.insert(EVENTS).values(**forged(4, stored[3]["hash"])))


def append_forged_row_behind_the_head(connection, stored):
    connection.execute(sa.insert(EVENTS).values(**forged(7, stored[6]["hash"])))


def swap_two_rows_content(connection, stored):
    # Everything but the id: each row is intact on its own, but sits in the wrong place.
    update(connection, 2, hash="swap-in-progress")     # hash is unique: free it first
    update(connection, 5, **{k: v for k, v in stored[2].items() if k != "id"})
    update(connection, 2, **{k: v for k, v in stored[5].items() if k != "id"})


def swap_two_rows_payloads(connection, stored):
    update(connection, 2, payload=stored[5]["payload"])
    update(connection, 5, payload=stored[2]["payload"])


def replace_the_head_hash(connection, stored):
    move_head(connection, 6, "0" * 63 + "1")


def delete_the_head(connection, stored):
    connection.execute(sa.delete(HEAD))


TAMPERING: list[tuple[Callable, int, str]] = [
    (edit_payload, 3, "hash mismatch (row edited)"),
    (edit_actor, 4, "hash mismatch (row edited)"),
    (edit_instant, 2, "hash mismatch (row edited)"),
    (edit_and_rehash_one_row, 4, "prev_hash does not match event 3 (row deleted or inserted before it)"),
    (delete_middle_row, 4, "id gap: expected event 3, found 4 (rows deleted before it)"),
    (delete_middle_row_and_renumber, 3, "prev_hash does not match event 2 (row deleted or inserted before it)"),
    (delete_last_row, 6, "head points to 6 but last event is 5 (rows cut from the end)"),
    (delete_last_two_rows, 5, "head points to 6 but last event is 4 (rows cut from the end)"),
    (delete_last_rows_and_move_the_head_to_a_wrong_hash, 4, "head hash does not match event 4 (last event or head replaced)"),
    (delete_every_row, 1, "head points to 6 but last event is 0 (rows cut from the end)"),
    (insert_forged_row_renumbering_the_rest, 5, "prev_hash does not match event 4 (row deleted or inserted before it)"),
    (insert_forged_row_with_a_made_up_hash, 4, "hash mismatch (row edited)"),
    (replace_a_row_with_a_forged_one, 5, "prev_hash does not match event 4 (row deleted or inserted before it)"),
    (append_forged_row_behind_the_head, 7, "head points to 6 but last event is 7 (rows added without moving the head)"),
    (swap_two_rows_content, 2, "prev_hash does not match event 1 (row deleted or inserted before it)"),
    (swap_two_rows_payloads, 2, "hash mismatch (row edited)"),
    (replace_the_head_hash, 6, "head hash does not match event 6 (last event or head replaced)"),
    (delete_the_head, 6, "audit head row is missing but events exist up to 6"),
]


@pytest.mark.parametrize("tamper,event_id,reason", TAMPERING, ids=[t[0].__name__ for t in TAMPERING])
def test_verify_reports_the_first_broken_link(chain, tamper, event_id, reason):
    stored = rows(chain)
    with chain.begin() as connection:
        tamper(connection, stored)
    result = verify_on(chain)
    assert not result.ok
    assert (result.broken.event_id, result.broken.reason) == (event_id, reason)


def test_a_broken_link_names_the_expected_and_found_hash(chain):
    stored = rows(chain)
    with chain.begin() as connection:
        edit_actor(connection, stored)
    broken = verify_on(chain).broken
    assert broken.found_hash == stored[4]["hash"]
    assert broken.expected_hash == event_hash(
        id=4, at=stored[4]["at"], actor="someone-else", action=stored[4]["action"],
        subject=stored[4]["subject"], payload=json.loads(stored[4]["payload"]),
        prev_hash=stored[4]["prev_hash"])


def test_verify_counts_the_intact_events_before_the_break(chain):
    with chain.begin() as connection:
        edit_payload(connection, rows(chain))
    assert verify_on(chain).events_checked == 2


def test_appends_continue_a_chain_after_verification(chain):
    assert verify_on(chain).ok
    append_events(chain, 2, start=CHAIN_LENGTH + 1)
    result = verify_on(chain)
    assert (result.ok, result.events_checked, result.last_id, result.broken) == (
        True, CHAIN_LENGTH + 2, CHAIN_LENGTH + 2, None)


# --- CLI --------------------------------------------------------------------------------------

def audit_cli() -> typer.Typer:
    app = typer.Typer()
    audit_cmd.register(app)
    return app


@pytest.fixture
def cli_chain(outbound_env_db):
    """Six events in the database the CLI is configured to use."""
    engine = make_engine(outbound_env_db)
    ensure_schema(engine)
    append_events(engine, CHAIN_LENGTH)
    yield engine
    engine.dispose()


def test_audit_verify_exits_0_on_an_intact_chain(cli_chain, cli_runner):
    result = cli_runner.invoke(audit_cli(), ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "audit chain intact: 6 events verified" in result.output


@pytest.mark.parametrize("tamper,event_id,reason", TAMPERING, ids=[t[0].__name__ for t in TAMPERING])
def test_audit_verify_exits_1_and_names_the_broken_link(cli_chain, cli_runner, tamper, event_id, reason):
    with cli_chain.begin() as connection:
        tamper(connection, rows(cli_chain))
    result = cli_runner.invoke(audit_cli(), ["audit", "verify"])
    assert result.exit_code == 1, result.output
    assert f"audit chain broken at event {event_id}: {reason}" in result.output


def test_audit_verify_json(cli_chain, cli_runner):
    with cli_chain.begin() as connection:
        delete_middle_row(connection, rows(cli_chain))
    result = cli_runner.invoke(audit_cli(), ["audit", "verify", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output) == {
        "ok": False, "events_checked": 2, "last_id": 2,
        "broken": {"event_id": 4, "reason": "id gap: expected event 3, found 4 (rows deleted before it)",
                   "expected_hash": None, "found_hash": None},
        "rows": None, "anchor": None}       # a broken chain vouches for no row: not checked


def test_audit_tail_shows_the_latest_events_oldest_first(cli_chain, cli_runner):
    result = cli_runner.invoke(audit_cli(), ["audit", "tail", "-n", "2", "--json"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines()]
    assert [(e["id"], e["actor"], e["action"], e["at"]) for e in events] == [
        (5, "user-1", "consent.record", "2026-07-15T16:05:00.000035Z"),
        (6, "user-0", "consent.record", "2026-07-15T16:06:00.000042Z")]
    assert events[1]["payload"] == {"n": 6, "channels": ["voice", "sms"], "note": "é ✓"}


def test_audit_tail_table(cli_chain, cli_runner):
    result = cli_runner.invoke(audit_cli(), ["audit", "tail", "-n", "3"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "consent.record" in line]
    assert [line.split("│")[1].strip() for line in lines] == ["4", "5", "6"]
    assert "2026-07-15T16:06:00.000042Z" in lines[-1] and "user-0" in lines[-1]
