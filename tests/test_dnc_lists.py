"""Internal, state and litigator lists in SQL; national loads recorded; status and freshness."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from consent import dnc
from consent.registry_store import RegistryStore
from consent.tables import DncEntry, DncSource
from outbound import audit

AT = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)


class AuditSpy:
    """Records audit calls with the exact keyword signature of `outbound.audit.append`."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, session, *, actor, action, subject, payload, at):
        # The row digests every change carries are tested in test_audit_integrity.
        payload = {name: value for name, value in payload.items() if name not in ("row_digests", "row_sets")}
        self.events.append({"actor": actor, "action": action, "subject": subject, "payload": payload, "at": at})


@pytest.fixture
def spy() -> AuditSpy:
    return AuditSpy()


def test_internal_add_records_who_and_why_and_is_audited(session, spy):
    entry, added = dnc.add_internal(session, "(212) 555-0123", reason="asked on call 42", actor="ann",
                                    at=AT, audit=spy)
    assert added and entry.phone == "+12125550123"
    assert (entry.added_by, entry.reason, entry.added_at) == ("ann", "asked on call 42", AT)
    assert spy.events == [{"actor": "ann", "action": "dnc.internal.add", "subject": "+12125550123",
                           "payload": {"entry_id": entry.id, "reason": "asked on call 42", "via": "manual",
                                       "revocation_id": None}, "at": AT}]
    assert dnc.sources_listing(session, "+12125550123") == {"state": [], "internal": True, "litigator": False}


def test_adding_twice_changes_nothing(session, spy):
    dnc.add_internal(session, "2125550123", reason="r", actor="ann", at=AT, audit=spy)
    _, added = dnc.add_internal(session, "+1 212 555 0123", reason="again", actor="bob", at=AT, audit=spy)
    assert not added and len(spy.events) == 1


def test_internal_removal_stamps_the_entry_and_never_deletes_it(session, spy):
    dnc.add_internal(session, "2125550123", reason="asked", actor="ann", at=AT, audit=spy)
    later = AT + timedelta(days=2)
    removed = dnc.remove_internal(session, "212-555-0123", reason="consent re-given in writing",
                                  actor="bob", at=later, audit=spy)
    assert [(e.removed_at, e.removed_by, e.removal_reason) for e in removed] == [
        (later, "bob", "consent re-given in writing")]
    assert session.execute(select(DncEntry).where(DncEntry.phone == "+12125550123")).scalars().one()
    assert dnc.sources_listing(session, "+12125550123")["internal"] is False
    assert spy.events[-1]["action"] == "dnc.internal.remove"
    assert spy.events[-1]["payload"]["reason"] == "consent re-given in writing"


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_removal_needs_a_reason(session, spy, reason):
    dnc.add_internal(session, "2125550123", reason="asked", actor="ann", at=AT, audit=spy)
    with pytest.raises(dnc.MissingReason, match="non-empty reason"):
        dnc.remove_internal(session, "2125550123", reason=reason, actor="bob", at=AT, audit=spy)
    assert dnc.sources_listing(session, "+12125550123")["internal"] is True


def test_removing_an_unlisted_number_is_an_error(session, spy):
    with pytest.raises(dnc.NotListed, match=r"\+12125550123 is not on the internal list"):
        dnc.remove_internal(session, "2125550123", reason="x", actor="bob", at=AT, audit=spy)


@pytest.mark.parametrize("phone", ["+44 20 7946 0958", "212-555-0123 x12", "call me", "555-0123", ""])
def test_an_invalid_number_is_refused(session, spy, phone):
    with pytest.raises(dnc.InvalidNumber):
        dnc.add_internal(session, phone, reason="r", actor="ann", at=AT, audit=spy)
    assert spy.events == []


def test_internal_changes_go_into_the_real_audit_chain(session):
    dnc.add_internal(session, "2125550123", reason="asked", actor="ann", at=AT, audit=audit.append)
    dnc.remove_internal(session, "2125550123", reason="mistake", actor="bob", at=AT, audit=audit.append)
    session.commit()
    actions = [event.action for event in audit.recent_events(session)]
    assert "dnc.internal.add" in actions and "dnc.internal.remove" in actions
    assert audit.verify(session).ok


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_state_list_from_csv_with_a_phone_column(session, spy, tmp_path):
    path = write(tmp_path, "fl.csv", "Name,Phone Number\nA,(305) 555-0100\nB,305.555.0101\n"
                                     "D,\"(305) 555-0100\"\n")
    report = dnc.import_state_list(session, "fl", path, at=AT, actor="ann", audit=spy)
    assert (report.state, report.entries, report.duplicates, report.rejected) == ("FL", 2, 1, 0)
    source = session.get(DncSource, report.source_id)
    assert (source.kind, source.state, source.entries, source.synced_at) == ("state", "FL", 2, AT)
    assert source.file_sha256 == report.file_sha256 and len(source.file_sha256) == 64
    assert spy.events[0]["action"] == "dnc.state.import"
    assert dnc.sources_listing(session, "+13055550101") == {"state": ["FL"], "internal": False, "litigator": False}


def test_a_new_load_of_a_state_list_replaces_the_old_one(session, spy, tmp_path):
    dnc.import_state_list(session, "TX", write(tmp_path, "a.txt", "2145550100\n2145550101\n"),
                          at=AT, actor="ann", audit=spy, version="2026Q2")
    dnc.import_state_list(session, "TX", write(tmp_path, "b.txt", "2145550101\n"),
                          at=AT + timedelta(days=90), actor="ann", audit=spy, version="2026Q3")
    assert dnc.sources_listing(session, "+12145550100")["state"] == []
    assert dnc.sources_listing(session, "+12145550101")["state"] == ["TX"]
    assert session.execute(select(DncEntry).where(DncEntry.phone == "+12145550100")).scalars().all()


def test_litigator_list_one_number_per_line(session, spy, tmp_path):
    path = write(tmp_path, "lit.txt", "+12125550100\r\n\r\n212-555-0101\r\n")
    report = dnc.import_litigator_list(session, path, at=AT, actor="ann", audit=spy)
    assert (report.entries, report.rejected) == (2, 0)
    assert dnc.sources_listing(session, "+12125550101")["litigator"] is True


def test_a_titled_single_column_list_loads(session, spy, tmp_path):
    path = write(tmp_path, "lit.txt", "Litigators\n2125550100\n")
    assert dnc.import_litigator_list(session, path, at=AT, actor="ann", audit=spy).entries == 1


@pytest.mark.parametrize("kind", ["state", "litigator"])
def test_a_list_with_a_bad_line_changes_nothing(session, spy, tmp_path, kind):
    """All or nothing: the previous load stays current, with its date, and the bad lines are named."""
    def load(path, at):
        if kind == "state":
            return dnc.import_state_list(session, "FL", path, at=at, actor="ann", audit=spy)
        return dnc.import_litigator_list(session, path, at=at, actor="ann", audit=spy)
    load(write(tmp_path, "old.csv", "phone\n3055550100\n"), AT)
    before = dnc.status(session, RegistryStore(tmp_path / "none"), AT + timedelta(days=1))
    bad = write(tmp_path, "new.csv", "name,phone\na,3055550101\nb,not a phone\nc,+44 20 7946 0958\nd\n")
    with pytest.raises(dnc.MalformedList) as refused:
        load(bad, AT + timedelta(days=1))
    assert [(r.line, r.reason, r.text) for r in refused.value.samples] == [
        (3, "letters_in_number", "not a phone"), (4, "not_nanp_number", "+44 20 7946 0958"), (5, "empty", "")]
    assert refused.value.to_dict()["rejected"] == 3 and "the current list is kept" in str(refused.value)
    assert dnc.status(session, RegistryStore(tmp_path / "none"), AT + timedelta(days=1)) == before
    listing = dnc.sources_listing(session, "+13055550100")
    assert listing["state" if kind == "state" else "litigator"] in (["FL"], True)
    assert not any(dnc.sources_listing(session, "+13055550101").values())
    assert len(spy.events) == 1


def test_a_list_synced_in_the_future_is_refused(session, spy, tmp_path):
    with pytest.raises(dnc.DncError, match="synced_at 2026-07-02T12:00:00Z is in the future"):
        dnc.import_state_list(session, "FL", write(tmp_path, "fl.txt", "3055550100\n"), at=AT, actor="ann",
                              audit=spy, synced_at=AT + timedelta(days=1))
    assert dnc.current_sources(session) == [] and spy.events == []


@pytest.mark.parametrize("content,message", [
    (b"", "the file is empty"),
    (b"\x00\x01\x02binary", "binary data"),
    (b"phone\n\xe9\xe8\n", r"not UTF-8 text \(byte 0xe9 at offset 6\)"),
    (b"name,email\nann,a@x.org\n", "no phone column; header seen: name, email"),
    (b"phone\nnot a number\n", "line 2: letters_in_number: 'not a number'"),
    (b"phone\n\n", "no valid phone number"),
])
def test_unusable_list_files_are_refused_precisely(session, spy, tmp_path, content, message):
    path = tmp_path / "list.csv"
    path.write_bytes(content)
    with pytest.raises(dnc.ListFileError, match=message):
        dnc.import_litigator_list(session, path, at=AT, actor="ann", audit=spy)
    assert spy.events == []


def test_utf16_list_is_read(session, spy, tmp_path):
    path = tmp_path / "utf16.csv"
    path.write_bytes("phone\r\n2125550100\r\n".encode("utf-16"))
    assert dnc.import_litigator_list(session, path, at=AT, actor="ann", audit=spy).entries == 1


def test_state_code_must_be_two_letters(session, spy, tmp_path):
    with pytest.raises(dnc.DncError, match="two-letter USPS code"):
        dnc.import_state_list(session, "Florida", write(tmp_path, "x.txt", "3055550100\n"), at=AT,
                              actor="ann", audit=spy)


def test_batched_listing_covers_every_source(session, spy, tmp_path):
    dnc.import_state_list(session, "FL", write(tmp_path, "fl.txt", "3055550100\n3055550101\n"),
                          at=AT, actor="a", audit=spy)
    dnc.import_state_list(session, "PA", write(tmp_path, "pa.txt", "3055550101\n"), at=AT, actor="a", audit=spy)
    dnc.import_litigator_list(session, write(tmp_path, "l.txt", "3055550101\n"), at=AT, actor="a", audit=spy)
    dnc.add_internal(session, "3055550102", reason="asked", actor="a", at=AT, audit=spy)
    phones = ["+13055550100", "+13055550101", "+13055550102", "+13055550103"]
    expected = {
        "+13055550100": {"state": ["FL"], "internal": False, "litigator": False},
        "+13055550101": {"state": ["FL", "PA"], "internal": False, "litigator": True},
        "+13055550102": {"state": [], "internal": True, "litigator": False},
        "+13055550103": {"state": [], "internal": False, "litigator": False},
    }
    assert dnc.sources_listing_many(session, phones) == expected
    # The same answer when the lists are larger than the batch (IN (...) queries instead of a scan).
    assert dnc.sources_listing_many(session, phones[:1]) == {"+13055550100": expected["+13055550100"]}


def test_status_ages_and_warnings(session, spy, tmp_path):
    registry = tmp_path / "registry"
    store = RegistryStore(registry)
    store.ingest_full([write(tmp_path, "212.txt", "2125550100\n")], synced_at=AT)
    dnc.import_state_list(session, "FL", write(tmp_path, "fl.txt", "3055550100\n"), at=AT,
                          actor="a", audit=spy, synced_at=AT - timedelta(days=40))
    dnc.add_internal(session, "3055550102", reason="asked", actor="a", at=AT, audit=spy)

    rows = {row["source"]: row for row in dnc.status(session, store, AT + timedelta(days=10))}
    assert rows["national"]["entries"] == 1 and rows["national"]["warning"] is None
    assert rows["national"]["age_days"] == 10.0 and not rows["national"]["stale"]
    assert rows["state:FL"]["stale"] and "over the 31-day limit" in rows["state:FL"]["warning"]
    assert rows["internal"]["entries"] == 1

    warned = {row["source"]: row for row in dnc.status(session, store, AT + timedelta(days=26))}["national"]
    assert not warned["stale"] and "refresh within 5 days" in warned["warning"]
    stale = {row["source"]: row for row in dnc.status(session, store, AT + timedelta(days=32))}["national"]
    assert stale["stale"]


def test_status_without_national_data_says_telemarketing_is_blocked(session, tmp_path):
    national = dnc.status(session, RegistryStore(tmp_path / "none"), AT)[0]
    assert national["stale"] and "telemarketing is blocked" in national["warning"]


def test_national_load_is_recorded_as_a_source(session, spy):
    files = [{"name": "212.txt", "sha256": "ab" * 32, "lines": 10}]
    source = dnc.record_national_load(session, kind="national", version="v1", files=files, entries=10,
                                      synced_at=AT, at=AT, actor="ann", audit=spy)
    assert (source.kind, source.file_sha256, source.entries) == ("national", "ab" * 32, 10)
    assert spy.events[0]["action"] == "dnc.national.import"


def test_status_shows_the_area_codes_held_and_the_oldest_sync(session, tmp_path):
    store = RegistryStore(tmp_path / "registry")
    store.ingest_full([write(tmp_path, "212.txt", "2125550100\n")], synced_at=AT - timedelta(days=40), now=AT)
    store.ingest_full([write(tmp_path, "201.txt", "2015550100\n")], synced_at=AT - timedelta(days=2), now=AT)
    national = dnc.status(session, store, AT)[0]
    assert national["area_codes_held"] == ["201", "212"] and national["area_codes"] == 2
    assert national["oldest_synced_at"] == national["synced_at"] == "2026-05-22T12:00:00Z"
    assert national["newest_synced_at"] == "2026-06-29T12:00:00Z"
    assert national["stale"] and national["stale_area_codes"] == ["212"]
    assert "1 of 2 area codes synced over 31 days ago" in national["warning"]
    assert national["coverage"]["201"] == {"synced_at": "2026-06-29T12:00:00Z", "entries": 1, "files": ["201.txt"]}
