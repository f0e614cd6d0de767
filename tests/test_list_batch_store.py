"""The contact import's storage: SQLite's one-statement json_each batches store exactly what
row-by-row executemany stores (values, SQL types, first-of-duplicates), whatever the text."""
from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from outbound.db import ensure_schema, make_engine
from outbound.lists import batch_store, find_or_create_campaign, import_contacts, open_list
from outbound.lists.batch_store import Batch, BatchWriter, ImportConstants

AT = datetime(2026, 7, 15, 16, 0, tzinfo=timezone.utc)
CREATED_AT = "2026-07-15 16:00:00.000000"

_CONTACT_SELECT = ("SELECT e164, phone_raw, first_name, last_name, email, zip, state, line_type, timezones, "
                   "states, attributes, source_line, created_at, import_id, typeof(first_name), "
                   "typeof(source_line), typeof(created_at) FROM contacts WHERE campaign_id = ? ORDER BY id")
_REJECT_SELECT = "SELECT line, reason, row, typeof(line) FROM import_rejects WHERE import_id = ? ORDER BY id"

# Text a spreadsheet can hold and a JSON round trip could change: NUL (SQLite's JSON functions
# stop at it), controls, quotes, backslashes, escapes spelled out, non-BMP characters, separators.
_TRICKY = st.sampled_from(["", "a\x00b", "\x00", "\\u0000", '"quoted"', "back\\slash", "\x01\x1f\x7f",
                           "😀", "\u2028\u2029", "line\nbreak", "\r\n", "José", "null", "[1]", "{}"])
_TEXT = st.one_of(st.none(), st.text(max_size=12), _TRICKY)


@pytest.fixture(scope="module")
def store_engine(tmp_path_factory):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('store') / 'outbound.db'}")
    ensure_schema(engine)
    yield engine
    engine.dispose()


# The attributes column is JSON object text (its JSON affinity would store a bare "0" as 0).
_ATTRIBUTES = st.dictionaries(st.text(max_size=5), st.one_of(st.text(max_size=8), _TRICKY), max_size=3).map(
    lambda attributes: json.dumps(attributes, ensure_ascii=False))


def _contact_rows(max_rows):
    e164 = st.sampled_from(["+12125550100", "+12125550101", "+13055550100", "+19075550100"])
    row = st.tuples(e164, st.text(max_size=12), _TEXT, _TEXT, _TEXT, _TEXT, _TEXT, st.sampled_from(["mobile", "unknown"]),
                    st.text(max_size=30), st.text(max_size=6), _ATTRIBUTES,
                    st.integers(2, 2**40))
    return st.lists(row, max_size=max_rows)


_REJECT = st.tuples(st.integers(1, 2**40), st.sampled_from(["invalid_number", "ragged_row"]),
                    st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=12), _TRICKY), max_size=4))


def _store(engine, campaign: str, contacts: list[tuple], rejects: list[tuple], *, json_each: bool):
    with Session(engine) as session:
        campaign_id = find_or_create_campaign(session, campaign, AT).id
        session.commit()
    with engine.begin() as connection:
        import_id = connection.exec_driver_sql(
            "INSERT INTO list_imports (campaign_id, file_name, accepted, duplicates, rejected, rejected_by_reason, "
            "started_at, actor) VALUES (?, 'x.csv', 0, 0, 0, '{}', ?, 'tester')", (campaign_id, CREATED_AT)).lastrowid
    with mock.patch.object(batch_store, "_json_each_capable", return_value=json_each):
        writer = BatchWriter(engine, ImportConstants(campaign_id, import_id, CREATED_AT))
        writer.put(Batch(list(contacts), list(rejects), len(contacts) + len(rejects)))
        writer.close()
    with engine.connect() as connection:
        stored_contacts = connection.exec_driver_sql(_CONTACT_SELECT, (campaign_id,)).all()
        stored_rejects = connection.exec_driver_sql(_REJECT_SELECT, (import_id,)).all()
    # The import id differs between the two stores; everything else must not.
    return [row[:13] + row[14:] for row in stored_contacts], stored_rejects


_runs = iter(range(10**9))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contacts=_contact_rows(12), rejects=st.lists(_REJECT, max_size=4))
def test_json_each_batches_store_what_executemany_stores(store_engine, contacts, rejects):
    run = next(_runs)
    fast = _store(store_engine, f"json-{run}", contacts, rejects, json_each=True)
    slow = _store(store_engine, f"many-{run}", contacts, rejects, json_each=False)
    assert fast == slow
    stored_contacts, _ = fast
    # The first of two rows with one number is the one kept (rows are stored in E.164 order,
    # stably), and no number is stored twice.
    first_of_each = {}
    for row in sorted(contacts, key=lambda row: row[0]):
        first_of_each.setdefault(row[0], row)
    assert [row[:12] for row in stored_contacts] == [tuple(r) for r in first_of_each.values()]


def test_sqlite_with_json_functions_stores_a_batch_in_one_statement(store_engine):
    contacts = [(f"+1212555{i:04d}", "x", None, None, None, None, None, "unknown", "", "", "{}", i + 2)
                for i in range(500)]
    statements = []
    # Traced on the only connection of a fresh engine, so the writer's statements are seen.
    engine = make_engine(store_engine.url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            connection.connection.dbapi_connection.set_trace_callback(statements.append)
        _store(engine, "traced", contacts, [], json_each=True)
    finally:
        engine.dispose()
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO CONTACTS")]
    assert len(inserts) == 1 and "json_each" in inserts[0]


def test_an_import_stores_the_same_with_and_without_json_each(tmp_path):
    # A NUL in the first 64 KiB makes the file binary: the tricky rows come after filler.
    filler = "".join(f"{2125551000 + i},Filler,{'pad' * 10}\n" for i in range(2_000))
    data = ("phone,first,notes\n" + filler +
            "(212) 555-0100,Ann,\"multi\nline\"\n"
            "212.555.0100,Dup,\n"
            "305-555-0100,\"Nul\x00l\",😀\n"
            "+44 20 7946 0958,Nigel,x\n"
            "9075550100,\"O\"\"Brien\",\"=cmd\"\n").encode()
    results = []
    for json_each in (True, False):
        engine = make_engine(f"sqlite:///{tmp_path / str(json_each) / 'outbound.db'}")
        ensure_schema(engine)
        reader, columns = open_list(io.BytesIO(data))
        with Session(engine) as session:
            campaign_id = find_or_create_campaign(session, "c", AT).id
            session.commit()
        with mock.patch.object(batch_store, "_json_each_capable", return_value=json_each):
            summary = import_contacts(engine, reader, columns, campaign_id=campaign_id, file_name="l.csv",
                                      actor="t", at=AT).summary()
        with engine.connect() as connection:
            contacts = connection.exec_driver_sql(
                "SELECT id, e164, phone_raw, first_name, attributes, source_line, created_at FROM contacts").all()
            rejects = connection.exec_driver_sql("SELECT id, line, reason, row FROM import_rejects").all()
        engine.dispose()
        results.append((summary, contacts, rejects))
    assert results[0] == results[1]
    summary, contacts, _ = results[0]
    assert summary["accepted"] == 2_003 and summary["duplicates"] == 1
    assert ("Nul\x00l",) in [(c.first_name,) for c in contacts]
