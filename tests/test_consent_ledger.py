"""The consent ledger: supersession, revocation, facts for the gate, history, import and CLI."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import pytest
import typer
from sqlalchemy import event, func, select
from sqlmodel import Session

from consent import records
from consent.ledger_io import BusinessRelationshipIn, ConsentIn, load_csv_bytes, load_json_bytes
from consent.records import relied_on
from consent.tables import BusinessRelationship, ConsentRecord, Revocation
from consent.types import (
    Channel, ConsentGrant, ConsentKind, ConsentNeed, Facts, Purpose, RevocationFact,
)
from outbound import audit
from outbound.models import AuditEvent

PHONE = "+12125550123"
OTHER_PHONE = "+13125550188"


def utc(text_: str) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=timezone.utc)


RECORDED = utc("2026-06-01T00:00:00")     # when the test rows are stored
NOW = utc("2026-07-15T16:00:00")          # when the gate asks


# The `engine` and `session` fixtures (tests/conftest.py) run each test on SQLite and PostgreSQL.

def consent_in(**overrides) -> ConsentIn:
    fields = {"phone": "(212) 555-0123", "kind": "written", "channels": ["voice", "sms"],
              "purposes": ["telemarketing"], "seller": "Acme", "granted_at": "2026-01-01T00:00:00Z",
              "evidence": {"certificate_id": "CERT-1"}}
    return ConsentIn.model_validate({**fields, **overrides})


def add(session, actor="alice", at=RECORDED, **overrides):
    return records.add_consent(session, consent_in(**overrides), actor=actor, at=at, audit=audit.append)


def revoke(session, channels=(Channel.SMS,), received_at="2026-03-01T00:00:00", actor="bob", at=RECORDED,
           via="sms_stop", phone=PHONE):
    return records.revoke(session, phone, channels, via, utc(received_at), actor=actor, at=at,
                          audit=audit.append)


def audit_events(session, action=None) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id)
    if action:
        query = query.where(AuditEvent.action == action)
    return list(session.scalars(query))


def count(session, table) -> int:
    return session.scalar(select(func.count()).select_from(table))


# --- adding and superseding -------------------------------------------------------------------

def test_a_consent_is_stored_normalised_and_audited_with_its_actor(session):
    stored = add(session, evidence={"disclosure_text": "I agree to calls.", "ip": "203.0.113.9"})
    session.commit()

    record = stored.row
    assert stored.created and record.phone == PHONE and record.channels == "voice sms"
    assert record.evidence["disclosure_text"] == "I agree to calls."
    assert record.evidence["disclosure_sha256"] == hashlib.sha256(b"I agree to calls.").hexdigest()
    [granted] = audit_events(session, "consent.granted")
    assert (granted.actor, granted.subject) == ("alice", PHONE)
    assert json.loads(granted.payload)["record_id"] == record.id
    assert "disclosure_text" not in json.loads(granted.payload)["evidence"]


def test_a_newer_consent_for_the_same_scope_supersedes_and_deletes_nothing(session):
    first = add(session, granted_at="2026-01-01T00:00:00Z").row
    second = add(session, actor="carol", granted_at="2026-03-01T00:00:00Z",
                 evidence={"certificate_id": "CERT-2"}).row
    session.commit()

    assert count(session, ConsentRecord) == 2
    assert (first.superseded_by_id, second.supersedes_id) == (second.id, first.id)
    assert second.superseded_by_id is None
    [superseded] = audit_events(session, "consent.superseded")
    assert superseded.actor == "carol"
    assert json.loads(superseded.payload)["superseded_id"] == first.id
    consents = records.facts_for(session, PHONE, NOW).consents
    assert [grant.evidence for grant in consents] == [f"consent#{second.id} cert=CERT-2"]


def test_a_late_backfilled_older_consent_slots_into_the_past_and_does_not_hide_the_newer_one(session):
    january = add(session, granted_at="2026-01-01T00:00:00Z").row
    march = add(session, granted_at="2026-03-01T00:00:00Z", evidence={"certificate_id": "CERT-3"}).row
    february = add(session, granted_at="2026-02-01T00:00:00Z", evidence={"certificate_id": "CERT-2"}).row
    session.commit()

    assert (january.superseded_by_id, february.supersedes_id) == (february.id, january.id)
    assert (february.superseded_by_id, march.supersedes_id) == (march.id, february.id)
    assert [g.evidence for g in records.facts_for(session, PHONE, NOW).consents] == \
        [f"consent#{march.id} cert=CERT-3"]


@pytest.mark.parametrize("different", [
    {"seller": "Other Co"},
    {"channels": ["voice"]},
    {"purposes": ["telemarketing", "informational"]},
])
def test_a_consent_of_another_scope_supersedes_nothing(session, different):
    first = add(session).row
    second = add(session, granted_at="2026-03-01T00:00:00Z", **different).row
    session.commit()

    assert first.superseded_by_id is None and second.supersedes_id is None
    assert len(records.facts_for(session, PHONE, NOW).consents) == 2


def test_the_same_consent_sent_twice_is_stored_once(session):
    first = add(session)
    again = add(session, actor="someone-else")
    session.commit()

    assert first.created and not again.created and again.row.id == first.row.id
    assert count(session, ConsentRecord) == 1
    assert len(audit_events(session, "consent.granted")) == 1


def test_supersede_refuses_records_of_different_scopes(session):
    voice_only = add(session, channels=["voice"]).row
    both = add(session, granted_at="2026-02-01T00:00:00Z").row
    with pytest.raises(records.LedgerError, match="same phone, seller, channels and purposes"):
        records.supersede(session, voice_only, both, actor="alice", at=RECORDED, audit=audit.append)


# --- revocations ------------------------------------------------------------------------------

def test_revoke_commits_before_returning_so_a_later_rollback_cannot_lose_the_opt_out(engine):
    with Session(engine) as session:
        stored_id = revoke(session).row.id
        session.rollback()           # whatever the caller does next fails
    with Session(engine) as session:
        [revocation] = session.scalars(select(Revocation)).all()
        assert revocation.id == stored_id and revocation.channels == "sms"
        [event_] = audit_events(session, "consent.revoked")
        assert (event_.actor, event_.subject) == ("bob", PHONE)


def test_a_revocation_received_after_it_was_recorded_takes_effect_when_recorded(session):
    stored = revoke(session, received_at="2026-09-01T00:00:00", at=RECORDED)
    assert stored.row.received_at == RECORDED
    payload = json.loads(audit_events(session, "consent.revoked")[0].payload)
    assert payload["received_at_given"] == "2026-09-01T00:00:00Z"


@pytest.mark.parametrize("phone,channels,via,message", [
    ("555", (Channel.SMS,), "sms_stop", "not a valid NANP phone number"),
    (PHONE, (), "sms_stop", "name at least one channel"),
    (PHONE, (Channel.SMS,), "carrier_pigeon", "unknown via 'carrier_pigeon'"),
])
def test_revoke_refuses_what_it_cannot_store_precisely(session, phone, channels, via, message):
    with pytest.raises(records.LedgerError, match=message):
        revoke(session, phone=phone, channels=channels, via=via)
    assert count(session, Revocation) == 0


def test_a_revocation_then_a_newer_grant_the_newer_grant_is_relied_on(session):
    add(session, at=utc("2026-01-01T00:00:00"), granted_at="2026-01-01T00:00:00Z")
    revoke(session, at=utc("2026-02-01T00:00:00"), channels=(Channel.SMS,), received_at="2026-02-01T00:00:00")
    newer = add(session, at=utc("2026-03-01T00:00:00"), granted_at="2026-03-01T00:00:00Z",
                evidence={"certificate_id": "CERT-2"}).row
    session.commit()

    def sms_telemarketing(at):
        facts = records.facts_for(session, PHONE, at)
        return relied_on(facts.consents, facts.revocations, Channel.SMS, Purpose.TELEMARKETING,
                         ConsentNeed.WRITTEN, at)

    in_february = sms_telemarketing(utc("2026-02-15T00:00:00"))
    assert in_february.grant is None and "revoked for sms at 2026-02-01" in in_february.reason
    in_april = sms_telemarketing(utc("2026-04-01T00:00:00"))
    assert in_april.grant is not None and in_april.grant.evidence == f"consent#{newer.id} cert=CERT-2"


# --- business relationships -------------------------------------------------------------------

def test_business_relationships_are_stored_once_and_the_latest_date_before_at_is_used(session):
    for fields in ({"last_transaction_at": "2025-01-01T00:00:00Z"},
                   {"last_transaction_at": "2026-05-01T00:00:00Z", "last_inquiry_at": "2026-05-02T00:00:00Z"},
                   {"last_transaction_at": "2026-08-01T00:00:00Z"}):      # after NOW: not a fact yet
        relationship = BusinessRelationshipIn.model_validate({"phone": PHONE, "seller": "Acme", **fields})
        records.add_business_relationship(session, relationship, actor="dave", at=RECORDED, audit=audit.append)
    again = records.add_business_relationship(
        session, BusinessRelationshipIn.model_validate({"phone": PHONE, "seller": "Acme",
                                                        "last_transaction_at": "2025-01-01T00:00:00Z"}),
        actor="dave", at=RECORDED, audit=audit.append)
    session.commit()

    assert not again.created and count(session, BusinessRelationship) == 3
    assert records.facts_for(session, PHONE, NOW).ebr_of("acme") == (utc("2026-05-01T00:00:00"),
                                                                    utc("2026-05-02T00:00:00"))
    events = audit_events(session, "consent.business_relationship")
    assert len(events) == 3 and {e.actor for e in events} == {"dave"}


# --- facts for the gate -----------------------------------------------------------------------

def test_facts_only_see_what_was_recorded_at_or_before_the_instant(session):
    old = add(session, at=utc("2026-01-10T00:00:00"), granted_at="2026-01-01T00:00:00Z").row
    new = add(session, at=utc("2026-04-10T00:00:00"), granted_at="2026-04-01T00:00:00Z",
              evidence={"certificate_id": "CERT-2"}).row
    revoke(session, at=utc("2026-05-10T00:00:00"), received_at="2026-05-09T00:00:00")
    session.commit()

    in_february = records.facts_for(session, PHONE, utc("2026-02-01T00:00:00"))
    assert [g.evidence for g in in_february.consents] == [f"consent#{old.id} cert=CERT-1"]
    assert in_february.revocations == ()
    in_july = records.facts_for(session, PHONE, NOW)
    assert [g.evidence for g in in_july.consents] == [f"consent#{new.id} cert=CERT-2"]
    assert in_july.revocations == (RevocationFact(utc("2026-05-09T00:00:00"), frozenset({Channel.SMS}), "sms_stop"),)


def test_facts_carry_the_grant_as_the_gate_reads_it(session):
    stored = add(session, kind="express", purposes=["informational"], expires_at="2027-01-01T00:00:00Z",
                 evidence={"disclosure_text": "Yes, text me."}).row
    session.commit()

    [grant] = records.facts_for(session, PHONE, NOW).consents
    sha = stored.evidence["disclosure_sha256"]
    assert grant == ConsentGrant(kind=ConsentKind.EXPRESS, channels=frozenset({Channel.VOICE, Channel.SMS}),
                                 purposes=frozenset({Purpose.INFORMATIONAL}), granted_at=utc("2026-01-01T00:00:00"),
                                 expires_at=utc("2027-01-01T00:00:00"),
                                 evidence=f"consent#{stored.id} sha256={sha[:16]}", seller="Acme")


def test_ledger_facts_fill_the_gates_facts(session):
    add(session)
    revoke(session)
    session.commit()
    ledger = records.facts_for(session, PHONE, NOW)

    facts = Facts(**ledger.fact_fields())

    assert facts.consents == ledger.consents and facts.revocations == ledger.revocations
    assert (facts.last_transaction_at, facts.last_inquiry_at) == (None, None)


def test_facts_for_many_reads_each_table_once_for_a_whole_batch(session, engine):
    phones = [f"+1212555{n:04d}" for n in range(100, 160)]
    for phone in phones[::2]:
        add(session, phone=phone)
        revoke(session, phone=phone)
    session.commit()

    statements = []
    listener = lambda *args: statements.append(args[2])          # noqa: E731  (before_cursor_execute)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        batch = records.facts_for_many(session, phones, NOW)
    finally:
        event.remove(engine, "before_cursor_execute", listener)

    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 3
    assert set(batch) == set(phones)
    assert all(batch[phone] == records.facts_for(session, phone, NOW) for phone in phones[:6])
    assert batch[phones[1]] == records.LedgerFacts()
    assert len(batch[phones[0]].consents) == 1 and len(batch[phones[0]].revocations) == 1


# --- relied_on (pure) -------------------------------------------------------------------------

JAN, FEB, MAR, APR = (utc(f"2026-0{m}-01T00:00:00") for m in (1, 2, 3, 4))


def grant(kind="written", channels=("voice", "sms"), purposes=("telemarketing",), granted_at=JAN,
          expires_at=None, evidence="consent#1"):
    return ConsentGrant(ConsentKind(kind), frozenset(map(Channel, channels)), frozenset(map(Purpose, purposes)),
                        granted_at, expires_at, evidence)


def revocation(at, channels=("sms",), via="sms_stop"):
    return RevocationFact(at, frozenset(map(Channel, channels)), via)


@pytest.mark.parametrize("consents,revocations,channel,purpose,need,at,relied,reason", [
    # written satisfies express; express does not satisfy written
    ([grant()], [], "sms", "telemarketing", "express", MAR, "consent#1", "consent#1: written"),
    ([grant(kind="express")], [], "sms", "telemarketing", "written", MAR, None, "is express, written is needed"),
    # not yet granted, expired (the expiry instant itself is expired)
    ([grant(granted_at=APR)], [], "voice", "telemarketing", "written", MAR, None, "is granted only at 2026-04-01"),
    ([grant(expires_at=MAR)], [], "voice", "telemarketing", "written", MAR, None, "expired at 2026-03-01"),
    ([grant(expires_at=APR)], [], "voice", "telemarketing", "written", MAR, "consent#1", "expires 2026-04-01"),
    # channel and purpose must be covered
    ([grant(channels=("voice",))], [], "sms", "telemarketing", "written", MAR, None, "no consent on file covers sms"),
    ([grant()], [], "voice", "informational", "express", MAR, None, "covers voice informational"),
    ([], [], "voice", "informational", "express", MAR, None, "no consent on file"),
    # revocations: same channel, received at/after the grant and at/before `at`
    ([grant()], [revocation(FEB)], "sms", "telemarketing", "written", MAR, None, "revoked for sms at 2026-02-01"),
    ([grant()], [revocation(JAN)], "sms", "telemarketing", "written", MAR, None, "revoked for sms"),
    ([grant()], [revocation(FEB)], "voice", "telemarketing", "written", MAR, "consent#1", ""),
    ([grant(granted_at=FEB)], [revocation(JAN)], "sms", "telemarketing", "written", MAR, "consent#1", ""),
    ([grant()], [revocation(APR)], "sms", "telemarketing", "written", MAR, "consent#1", ""),
    # a newer grant after the revocation counts again; the newest qualifying one is named
    ([grant(), grant(granted_at=MAR, evidence="consent#2")], [revocation(FEB)], "sms", "telemarketing",
     "written", APR, "consent#2", ""),
    ([grant(), grant(granted_at=FEB, evidence="consent#2")], [], "voice", "telemarketing", "written", MAR,
     "consent#2", ""),
    ([grant()], [], "voice", "telemarketing", "none", MAR, None, "no consent is needed"),
])
def test_relied_on(consents, revocations, channel, purpose, need, at, relied, reason):
    result = relied_on(consents, revocations, Channel(channel), Purpose(purpose), ConsentNeed(need), at)
    assert (result.grant.evidence if result.grant else None) == relied
    assert reason in result.reason


# --- history ----------------------------------------------------------------------------------

def test_history_lists_everything_in_time_order_with_who_recorded_it(session):
    add(session, granted_at="2026-01-01T00:00:00Z")
    revoke(session, received_at="2026-02-01T00:00:00")
    records.add_business_relationship(
        session, BusinessRelationshipIn.model_validate({"phone": PHONE, "seller": "Acme",
                                                        "last_inquiry_at": "2025-12-01T00:00:00Z"}),
        actor="dave", at=RECORDED, audit=audit.append)
    add(session, actor="carol", granted_at="2026-03-01T00:00:00Z", evidence={"certificate_id": "CERT-2"})
    add(session, phone=OTHER_PHONE)
    session.commit()

    events = records.history(session, "212.555.0123")
    assert [(e.at, e.event, e.recorded_by) for e in events] == [
        (utc("2025-12-01T00:00:00"), "business_inquiry", "dave"),
        (utc("2026-01-01T00:00:00"), "consent_granted", "alice"),
        (utc("2026-02-01T00:00:00"), "revocation", "bob"),
        (utc("2026-03-01T00:00:00"), "consent_granted", "carol"),
        (utc("2026-03-01T00:00:00"), "consent_superseded", "carol"),
    ]
    assert events[-1].detail == {"superseded_by": events[3].record}


def test_ledger_view_says_what_the_gate_relies_on_for_each_channel_and_purpose(session):
    stored = add(session).row
    revoke(session, channels=(Channel.SMS,), received_at="2026-02-01T00:00:00")
    session.commit()

    view = records.ledger_view(session, PHONE, NOW)
    by_key = {(r.channel.value, r.purpose.value): r for r in view.reliance}
    assert by_key["voice", "telemarketing"].grant.evidence.startswith(f"consent#{stored.id}")
    assert by_key["sms", "telemarketing"].grant is None
    assert "revoked for sms" in by_key["sms", "telemarketing"].reason
    assert "no consent on file covers voice informational" in by_key["voice", "informational"].reason
    as_json = view.as_dict()
    assert as_json["phone"] == PHONE and len(as_json["history"]) == 2 and len(as_json["relied_on"]) == 4


def test_an_expired_record_stays_on_file_but_is_not_relied_on(session):
    expired = add(session, expires_at="2026-07-01T00:00:00Z").row
    session.commit()

    view = records.ledger_view(session, PHONE, NOW, channels=[Channel.VOICE], purposes=[Purpose.TELEMARKETING])

    [reliance] = view.reliance
    assert reliance.grant is None
    assert reliance.reason == f"none qualifies: consent#{expired.id} expired at 2026-07-01T00:00:00Z"
    assert [e.record for e in view.events] == [f"consent#{expired.id}"]
    before_expiry = records.ledger_view(session, PHONE, utc("2026-06-30T00:00:00"))
    assert before_expiry.reliance[0].grant is not None


# --- import -----------------------------------------------------------------------------------

MIXED_CSV = b"""type,phone,kind,channels,purposes,seller,granted_at,expires_at,disclosure_text,via,received_at,last_transaction_at
consent,(212) 555-0123,written,voice;sms,telemarketing,Acme,2026-01-01T00:00:00Z,,I agree,,,
,212-555-0124,express,voice sms,informational,Acme,2026-01-01T00:00:00-05:00,,,,,
revocation,2125550123,,sms,,,,,,sms_stop,2026-02-01T00:00:00Z,
business_relationship,2125550123,,,,Acme,,,,,,2025-12-01T00:00:00Z
consent,555,verbal,fax,,,2026-01-01,,,,,
consent,2125550123,written,voice,telemarketing,Acme,2026-03-01T00:00:00Z,2026-02-01T00:00:00Z,I agree,,,
"""


def test_import_loads_every_good_row_and_reports_each_bad_one(session):
    summary = records.import_loaded(session, load_csv_bytes(MIXED_CSV), source="mixed.csv", actor="erin",
                                    at=RECORDED, audit=audit.append)
    session.commit()

    assert summary.loaded == {"consent": 2, "revocation": 1, "business_relationship": 1}
    assert [e.line for e in summary.errors] == [6, 7]
    assert "phone: not a valid NANP phone number: '555'" in summary.errors[0].reason
    assert "kind: Input should be 'written' or 'express' (got 'verbal')" in summary.errors[0].reason
    assert "granted_at: 2026-01-01T00:00:00 has no time zone" in summary.errors[0].reason
    assert "expires_at 2026-02-01T00:00:00+00:00 is not after granted_at" in summary.errors[1].reason
    [imported] = audit_events(session, "consent.imported")
    assert imported.actor == "erin" and json.loads(imported.payload)["rejected"] == 2
    assert {e.actor for e in audit_events(session)} == {"erin"}

    again = records.import_loaded(session, load_csv_bytes(MIXED_CSV), source="mixed.csv", actor="erin",
                                  at=RECORDED, audit=audit.append)
    assert again.loaded == {"consent": 0, "revocation": 0, "business_relationship": 0}
    assert again.unchanged == {"consent": 2, "revocation": 1, "business_relationship": 1}


def test_the_audit_chain_stays_intact_through_every_kind_of_change(session):
    records.import_loaded(session, load_csv_bytes(MIXED_CSV), source="mixed.csv", actor="erin",
                          at=RECORDED, audit=audit.append)
    add(session, granted_at="2026-04-01T00:00:00Z", evidence={"certificate_id": "CERT-9"})
    revoke(session, channels=(Channel.VOICE,))
    session.commit()
    assert audit.verify(session).ok


# --- CLI --------------------------------------------------------------------------------------

@pytest.fixture
def cli(outbound_env_db, cli_runner, monkeypatch):
    from outbound.commands import consent_cmd

    monkeypatch.setenv("USER", "tester")
    app = typer.Typer()              # only this command group: the test does not depend on the others
    consent_cmd.register(app)
    return lambda *args: cli_runner.invoke(app, list(args))


def test_cli_import_json_summary_is_one_object_on_the_last_line(cli, tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_bytes(MIXED_CSV)

    result = cli("consent", "import", str(path), "--json", "--actor", "frank")

    assert result.exit_code == 2, result.output       # some rows were rejected
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["loaded"] == {"consent": 2, "revocation": 1, "business_relationship": 1}
    assert summary["rejected"] == 2 and [e["line"] for e in summary["errors"]] == [6, 7]


def test_cli_import_of_a_clean_json_lines_file_exits_0(cli, tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in [
        {"phone": "2125550123", "kind": "written", "channels": ["sms"], "purposes": ["telemarketing"],
         "seller": "Acme", "granted_at": "2026-01-01T00:00:00Z", "certificate_id": "CERT-1"},
        {"type": "revocation", "phone": "2125550123", "via": "keypress", "received_at": "2026-02-01T00:00:00Z"},
    ]))
    result = cli("consent", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "loaded 1 consent, 1 revocation, 0 business_relationship; rejected 0" in result.output


def test_cli_show_and_revoke(cli, tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps([{"phone": "2125550123", "kind": "written", "channels": ["voice", "sms"],
                                 "purposes": ["telemarketing"], "seller": "Acme", "granted_at": "2026-01-01T00:00:00Z",
                                 "evidence": {"certificate_id": "CERT-1"}}]))
    assert cli("consent", "import", str(path)).exit_code == 0

    shown = cli("consent", "show", "(212) 555-0123", "--json", "--channel", "sms", "--purpose", "telemarketing")
    assert shown.exit_code == 0, shown.output
    view = json.loads(shown.output)
    assert [r["evidence"] for r in view["relied_on"]] == ["consent#1 cert=CERT-1"]

    revoked = cli("consent", "revoke", "2125550123", "--channels", "sms", "--via", "sms_stop", "--json")
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(revoked.output)["recorded_by"] == "cli:tester"

    shown = cli("consent", "show", "2125550123", "--channel", "sms")
    assert shown.exit_code == 0
    assert "none qualifies: consent#1 was revoked for sms" in " ".join(shown.output.split())


@pytest.mark.parametrize("args,message", [
    (("consent", "show", "12345"), "not a valid NANP phone number: '12345'"),
    (("consent", "revoke", "2125550123", "--channels", "fax"), "unknown channel in 'fax'"),
    (("consent", "revoke", "2125550123", "--received-at", "yesterday"), "not an ISO 8601 instant"),
    (("consent", "revoke", "2125550123", "--received-at", "2026-01-01T00:00:00"), "has no time zone"),
])
def test_cli_refuses_bad_input_with_a_precise_message_and_status_2(cli, args, message):
    result = cli(*args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


# --- loading files: each bad row gets a precise reason, the good rows still load ---------------

GOOD = {"phone": "2125550123", "kind": "written", "channels": ["sms"], "purposes": ["telemarketing"],
        "seller": "Acme", "granted_at": "2026-01-01T00:00:00Z", "source": "web form"}


@pytest.mark.parametrize("data,line,reason", [
    (b'{"phone": "2125550123", "phone": "2125550124"}\n' + json.dumps(GOOD).encode(), 1,
     "phone: field appears twice"),
    (json.dumps(GOOD).encode() + b'\n{"type": "optout", "phone": "2125550123"}', 2,
     "type: unknown record type 'optout'"),
    (json.dumps(GOOD).encode() + b'\n[1, 2]', 2, "a record is a JSON object, not an array"),
    (json.dumps(GOOD).encode() + b'\n{"phone": ', 2, "JSON syntax error"),
    (json.dumps(GOOD).encode() + b'\n' + json.dumps({**GOOD, "evidence": {"disclosure_text": "I agree",
                                                                        "disclosure_sha256": "0" * 64}}).encode(),
     2, "disclosure_sha256 does not match disclosure_text"),
    (json.dumps(GOOD).encode() + b'\n' + json.dumps({**GOOD, "certificate_id": "A",
                                                   "evidence": {"certificate_id": "B"}}).encode(),
     2, "certificate_id is given both flat and under evidence"),
    (json.dumps(GOOD).encode() + b'\n' + json.dumps({**GOOD, "seller": "caf\udce9"}).encode(), 2,
     "seller: not valid UTF-8 text"),
    (json.dumps(GOOD).encode() + b'\n{"type": "revocation", "phone": "2125550123", "via": "fax",'
                                 b' "received_at": "2026-01-01T00:00:00Z"}', 2,
     "via: Input should be 'sms_stop', 'keypress', 'spoken', 'email', 'agent' or 'api' (got 'fax')"),
])
def test_json_rows_are_rejected_with_a_precise_reason_and_the_good_row_still_loads(data, line, reason):
    loaded = load_json_bytes(data)
    good_line = 2 if line == 1 else 1
    assert [row.line for row in loaded.rows] == [good_line]
    [error] = loaded.errors
    assert error.line == line and reason in error.reason, error.reason


def test_a_json_array_with_a_syntax_error_keeps_the_rows_before_it():
    data = b'[\n' + json.dumps(GOOD).encode() + b',\n' + json.dumps(GOOD).encode() + b',\n{"phone" 5}\n]'
    loaded = load_json_bytes(data)
    assert [row.line for row in loaded.rows] == [2, 3]
    [error] = loaded.errors
    assert error.line == 4 and "the rest of the array was not read" in error.reason


@pytest.mark.parametrize("data,reason", [
    (b"", "the file holds no records"),
    (b"[]", "the file holds no records"),
    (b"phone,kind,kind\n2125550123,written,express\n", "header: column 'kind' appears twice"),
    (b"number,kind\n2125550123,written\n", "header: no 'phone' column"),
])
def test_files_that_cannot_be_read_at_all_say_why(data, reason):
    loaded = load_csv_bytes(data) if data.startswith(b"phone") or data.startswith(b"number") \
        else load_json_bytes(data)
    assert [(error.line, error.reason[:len(reason)]) for error in loaded.errors] == \
        [(1 if data.startswith((b"phone", b"number")) else 0, reason)]


def test_csv_accepts_a_bom_both_list_spellings_and_multi_line_cells():
    data = ("\ufeffphone,kind,channels,purposes,seller,granted_at,disclosure_text\n"
            '2125550123,written,voice;sms,telemarketing,Acme,2026-01-01T00:00:00Z,"I agree\n to calls "\n'
            "2125550124,express,voice sms,informational telemarketing,Acme,2026-01-01T00:00:00Z,\n"
            "2125550125,express,voice,informational,Acme,2026-01-01T00:00:00Z,,extra\n").encode()
    loaded = load_csv_bytes(data)
    assert [row.line for row in loaded.rows] == [2, 4]
    first, second = (row.record for row in loaded.rows)
    assert first.channels == {Channel.VOICE, Channel.SMS}
    assert first.evidence.disclosure_text == "I agree\n to calls "           # kept exactly as given
    assert second.purposes == {Purpose.INFORMATIONAL, Purpose.TELEMARKETING}
    assert [(e.line, e.reason) for e in loaded.errors] == [(5, "8 cells but the header has 7 columns")]
