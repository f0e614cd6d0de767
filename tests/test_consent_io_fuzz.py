"""Fuzzing the ledger file loader: whatever the input, nothing crashes, every row is either loaded
or rejected with a reason, the counts add up, and no good row is lost."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings, strategies as st
from sqlmodel import Session

from consent import records
from consent.ledger_io import (
    BusinessRelationshipIn, ConsentIn, LoadedFile, RevocationIn, load_csv_bytes, load_json_bytes, seller_key,
)
from outbound import audit

RECORD_TYPES = (ConsentIn, RevocationIn, BusinessRelationshipIn)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12)

# Objects that look like records, with every field filled by anything at all.
FIELDS = ("type", "phone", "kind", "channels", "purposes", "seller", "brand", "granted_at", "expires_at",
          "evidence", "via", "received_at", "last_transaction_at", "last_inquiry_at", "note", "ip",
          "disclosure_text", "disclosure_sha256")
record_like = st.dictionaries(st.sampled_from(FIELDS), json_values | st.sampled_from(
    ["consent", "revocation", "business_relationship", "2125550123", "written", "express", "voice",
     "2026-01-01T00:00:00Z", "sms_stop"]) | st.lists(st.sampled_from(["voice", "sms", "telemarketing"])),
    max_size=10)


def assert_well_formed(loaded: LoadedFile) -> None:
    for row in loaded.rows:
        assert isinstance(row.record, RECORD_TYPES) and row.line >= 1
    for error in loaded.errors:
        assert isinstance(error.reason, str) and error.reason.strip() and error.line >= 0


def assert_every_line_accounted_for(loaded: LoadedFile, lines: list[int]) -> None:
    seen = sorted([row.line for row in loaded.rows] + [error.line for error in loaded.errors])
    assert seen == sorted(lines)


@given(st.binary(max_size=2000))
@settings(max_examples=300)
def test_arbitrary_bytes_never_crash_either_loader(data):
    assert_well_formed(load_json_bytes(data))
    assert_well_formed(load_csv_bytes(data))


@given(st.text(max_size=2000))
@settings(max_examples=300)
def test_arbitrary_text_never_crashes_either_loader(text):
    data = text.encode("utf-8", errors="surrogatepass")
    assert_well_formed(load_json_bytes(data))
    assert_well_formed(load_csv_bytes(data))


@given(st.lists(json_values | record_like, min_size=2, max_size=12))
@settings(max_examples=200)
def test_json_lines_every_value_is_loaded_or_rejected_on_its_own_line(values):
    data = "\n".join(json.dumps(value) for value in values).encode()
    loaded = load_json_bytes(data)
    assert_well_formed(loaded)
    # A file of two or more lines is JSON Lines: one row per line, each accounted for once.
    assert_every_line_accounted_for(loaded, list(range(1, len(values) + 1)))


@given(st.lists(json_values | record_like, min_size=1, max_size=12))
@settings(max_examples=200)
def test_json_array_every_element_is_loaded_or_rejected(values):
    data = ("[\n" + ",\n".join(json.dumps(value) for value in values) + "\n]").encode()
    loaded = load_json_bytes(data)
    assert_well_formed(loaded)
    assert_every_line_accounted_for(loaded, list(range(2, len(values) + 2)))


@given(st.lists(record_like, min_size=1, max_size=10))
@settings(max_examples=200)
def test_csv_of_record_like_rows_every_row_is_loaded_or_rejected(rows):
    columns = list(FIELDS)

    def cell(value) -> str:
        if value is None:
            return ""
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return ";".join(value)
        return value if isinstance(value, str) else json.dumps(value)

    lines = [",".join(columns)]
    for row in rows:
        cells = [cell(row.get(name)) for name in columns]
        lines.append(",".join('"' + c.replace('"', '""') + '"' for c in cells))
    data = "\r\n".join(lines).encode("utf-8", errors="surrogatepass")
    loaded = load_csv_bytes(data)
    assert_well_formed(loaded)
    # Rows whose every cell is blank are skipped; every other row is loaded or rejected once.
    non_blank = [row for row in rows if any(cell(row.get(name)).strip() for name in columns)]
    if not non_blank:
        assert [error.reason for error in loaded.errors] == ["the file holds no records"]
    else:
        assert len(loaded.rows) + len(loaded.errors) == len(non_blank)


# --- nothing good is lost ---------------------------------------------------------------------

plain_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30).filter(str.strip)
phones = st.sampled_from(["2125550123", "(212) 555-0124", "+1 312 555 0188", "415.555.0199", "+13055550123"])
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1),
                        timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-5))]))


@st.composite
def good_records(draw) -> dict:
    record_type = draw(st.sampled_from(["consent", "revocation", "business_relationship"]))
    base = {"type": record_type, "phone": draw(phones)}
    if record_type == "consent":
        granted = draw(instants)
        return {**base, "kind": draw(st.sampled_from(["written", "express"])),
                "channels": draw(st.lists(st.sampled_from(["voice", "sms"]), min_size=1, unique=True)),
                "purposes": draw(st.lists(st.sampled_from(["telemarketing", "informational"]), min_size=1,
                                          unique=True)),
                "seller": draw(plain_text.filter(seller_key)), "granted_at": granted.isoformat(),
                "evidence": {"disclosure_text": draw(plain_text), "certificate_id": draw(plain_text)}}
    if record_type == "revocation":
        return {**base, "channels": ["sms"], "via": draw(st.sampled_from(["sms_stop", "keypress", "agent"])),
                "received_at": draw(instants).isoformat(), "note": draw(st.none() | plain_text)}
    return {**base, "seller": draw(plain_text.filter(seller_key)), "last_inquiry_at": draw(instants).isoformat()}


@given(st.lists(st.tuples(st.booleans(), good_records(), json_values), min_size=1, max_size=15))
@settings(max_examples=150)
def test_good_rows_among_bad_ones_all_load(mixed):
    # Each line is either a good record or junk that is not a JSON object at all.
    lines = [record if is_good else (junk if not isinstance(junk, dict) else [junk])
             for is_good, record, junk in mixed]
    loaded = load_json_bytes(("\n".join(json.dumps(line) for line in lines) + "\n\n").encode())
    assert_well_formed(loaded)
    good_lines = [n for n, (is_good, _, _) in enumerate(mixed, start=1) if is_good]
    if len(lines) == 1:              # one value: a lone object or array, not JSON Lines
        assert [row.line for row in loaded.rows] == good_lines
        return
    assert [row.line for row in loaded.rows] == good_lines
    assert [error.line for error in loaded.errors] == [n for n in range(1, len(lines) + 1) if n not in good_lines]


@given(st.lists(good_records(), min_size=1, max_size=8))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_loaded_row_can_be_stored(engine, rows):
    # `engine` (conftest) is one database for all examples: repeated rows are stored once.
    loaded = load_json_bytes(json.dumps(rows).encode())
    assert not loaded.errors
    with Session(engine) as session:
        summary = records.import_loaded(session, loaded, source="fuzz", actor="fuzz",
                                        at=datetime(2030, 6, 1, tzinfo=timezone.utc), audit=audit.append)
        session.commit()
    assert summary.rejected == 0
    assert sum(summary.loaded.values()) + sum(summary.unchanged.values()) == len(rows)
