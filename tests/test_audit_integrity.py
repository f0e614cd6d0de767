"""The audit protects the data, not only itself: a keyed chain, anchors, and the fact rows
(consent, revocations, business relationships, DNC) checked against their audit events."""
from __future__ import annotations

import hashlib
import json
import stat
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
import typer
from sqlmodel import Session

from consent import dnc, records
from consent.ledger_io import BusinessRelationshipIn, ConsentIn
from consent.row_digest import CHUNK
from consent.tables import ConsentRecord, DncEntry
from consent.types import Channel
from outbound import audit, audit_key, migrations
from outbound.audit import Anchor, GENESIS_HASH, event_text
from outbound.audit_key import AuditKey
from outbound.commands import audit_cmd
from outbound.db import make_engine, session_scope
from outbound.models import AuditEvent, AuditHead

UTC = timezone.utc
AT = datetime(2026, 7, 15, 16, 0, tzinfo=UTC)
EVENTS = AuditEvent.__table__
HEAD = AuditHead.__table__
CONSENTS = ConsentRecord.__table__
ENTRIES = DncEntry.__table__


def consent_in(phone: str = "(212) 555-0123", **overrides) -> ConsentIn:
    fields = {"phone": phone, "kind": "written", "channels": ["voice", "sms"],
              "purposes": ["telemarketing"], "seller": "Acme", "granted_at": "2026-01-01T00:00:00Z",
              "evidence": {"certificate_id": "CERT-1"}}
    return ConsentIn.model_validate({**fields, **overrides})


def facts(engine) -> None:
    """One of each audited change, committed: consents (one superseding another), a revocation,
    a business relationship, internal DNC entries (one removed) and a state list."""
    with session_scope(engine) as session:
        records.add_consent(session, consent_in(), actor="ann", at=AT, audit=audit.append)
        records.add_consent(session, consent_in(granted_at="2026-02-01T00:00:00Z",
                                                evidence={"certificate_id": "CERT-2"}),
                            actor="ann", at=AT, audit=audit.append)
        records.add_business_relationship(session, BusinessRelationshipIn.model_validate(
            {"phone": "+13125550188", "seller": "Acme", "last_transaction_at": "2026-05-01T00:00:00Z"}),
            actor="ann", at=AT, audit=audit.append)
        dnc.add_internal(session, "+13125550100", reason="asked", actor="ann", at=AT, audit=audit.append)
        dnc.add_internal(session, "+13125550101", reason="asked", actor="ann", at=AT, audit=audit.append)
        dnc.remove_internal(session, "+13125550101", reason="added in error", actor="cy", at=AT,
                            audit=audit.append)
    with Session(engine) as session:
        records.revoke(session, "+12125550123", {Channel.SMS}, "sms_stop", AT, actor="bob", at=AT,
                       audit=audit.append)


@pytest.fixture
def state_list(tmp_path):
    path = tmp_path / "fl.txt"
    path.write_text("".join(f"305555{n:04d}\n" for n in range(CHUNK * 2 + 5)))
    return path


@pytest.fixture
def audited(engine, state_list):
    facts(engine)
    with session_scope(engine) as session:
        dnc.import_state_list(session, "FL", state_list, at=AT, actor="ann", audit=audit.append)
    return engine


def verify_on(engine, **options) -> audit.VerifyResult:
    with Session(engine) as session:
        return audit.verify(session, **options)


def problems(result) -> list[tuple[str, int, str]]:
    return [(p.table, p.row_id, p.problem) for p in result.rows.problems]


def state_entry_ids(engine) -> list[int]:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(ENTRIES.c.id).where(ENTRIES.c.list_kind == "state")
                                       .order_by(ENTRIES.c.id)).scalars())


# --- the rows ---------------------------------------------------------------------------------

def test_every_audited_change_leaves_the_rows_verifiable(audited):
    result = verify_on(audited)
    assert result.ok and result.broken is None and result.rows.problems == []
    assert result.rows.tables["consent_records"] == 2 and result.rows.tables["revocations"] == 1
    assert result.rows.tables["business_relationships"] == 1 and result.rows.tables["dnc_sources"] == 1
    assert len(state_entry_ids(audited)) == CHUNK * 2 + 5
    with audited.connect() as connection:
        entries = connection.execute(sa.select(sa.func.count()).select_from(ENTRIES)).scalar_one()
    assert result.rows.tables["dnc_entries"] == entries


def test_an_edited_consent_row_is_found_and_named(audited):
    # Before: verify only walked the chain, which an edit of consent_records does not touch.
    with audited.begin() as connection:
        connection.execute(sa.update(CONSENTS).where(CONSENTS.c.id == 1).values(
            purposes="telemarketing informational"))
    result = verify_on(audited)
    assert not result.ok and result.broken is None
    assert problems(result) == [("consent_records", 1, "edited")]
    assert "differs from audit event" in result.rows.problems[0].detail


def test_an_edited_consent_expiry_is_found(audited):
    with audited.begin() as connection:
        connection.execute(sa.update(CONSENTS).where(CONSENTS.c.id == 2).values(
            expires_at=datetime(2030, 1, 1, tzinfo=UTC)))
    assert problems(verify_on(audited)) == [("consent_records", 2, "edited")]


def test_a_deleted_internal_dnc_row_is_found(audited):
    with audited.begin() as connection:
        connection.execute(sa.delete(ENTRIES).where(ENTRIES.c.phone == "+13125550100"))
    result = verify_on(audited)
    assert not result.ok
    assert problems(result) == [("dnc_entries", 1, "removed")]


def test_an_undone_internal_removal_is_found(audited):
    # The removal was audited: clearing its stamp puts the number back behind the audit's back.
    with audited.begin() as connection:
        connection.execute(sa.update(ENTRIES).where(ENTRIES.c.phone == "+13125550101")
                           .values(removed_at=None, removed_by=None, removal_reason=None))
    assert problems(verify_on(audited)) == [("dnc_entries", 2, "edited")]


def test_a_deleted_revocation_is_found(audited):
    with audited.begin() as connection:
        connection.execute(sa.text("DELETE FROM revocations"))
    assert problems(verify_on(audited)) == [("revocations", 1, "removed")]


def test_a_row_inserted_without_an_audit_event_is_found(audited):
    with audited.begin() as connection:
        connection.execute(sa.insert(CONSENTS).values(
            phone="+12125550999", kind="written", channels="voice", purposes="telemarketing",
            seller="Acme", granted_at=AT, evidence={"certificate_id": "FORGED"}, recorded_at=AT,
            recorded_by="ann"))
    result = verify_on(audited)
    assert problems(result) == [("consent_records", 3, "unaudited")]
    assert "has no audit event" in result.rows.problems[0].detail


def test_a_row_deleted_from_a_state_list_load_is_named_by_id(audited):
    victim = state_entry_ids(audited)[CHUNK + 3]
    with audited.begin() as connection:
        connection.execute(sa.delete(ENTRIES).where(ENTRIES.c.id == victim))
    assert problems(verify_on(audited)) == [("dnc_entries", victim, "removed")]


def test_a_row_edited_in_a_state_list_load_is_named_by_its_chunk(audited):
    ids = state_entry_ids(audited)
    with audited.begin() as connection:
        connection.execute(sa.update(ENTRIES).where(ENTRIES.c.id == ids[CHUNK + 3])
                           .values(phone="+13055559999"))
    [problem] = verify_on(audited).rows.problems
    assert (problem.table, problem.problem) == ("dnc_entries", "edited")
    assert (problem.row_id, problem.last_row_id) == (ids[CHUNK], ids[2 * CHUNK - 1])


def test_a_row_added_to_a_state_list_load_is_found(audited):
    with audited.begin() as connection:
        source_id = connection.execute(sa.text("SELECT id FROM dnc_sources")).scalar_one()
        connection.execute(sa.insert(ENTRIES).values(source_id=source_id, list_kind="state", state="FL",
                                                     phone="+13055558888", added_at=AT, added_by="ann"))
    [problem] = verify_on(audited).rows.problems
    assert (problem.table, problem.problem) == ("dnc_entries", "unaudited")


def test_freshening_a_dnc_source_is_found(audited):
    with audited.begin() as connection:
        connection.execute(sa.text("UPDATE dnc_sources SET synced_at = :at"), {"at": AT + timedelta(days=60)})
    assert problems(verify_on(audited)) == [("dnc_sources", 1, "edited")]


# --- the key ----------------------------------------------------------------------------------

def rewrite_chain(engine, hash_text) -> None:
    """What an attacker with write access does after an edit: recompute every hash and the head."""
    with engine.begin() as connection:
        at_iso = audit._at_iso_sql(engine.dialect.name)
        rows = connection.execute(sa.select(EVENTS.c.id, at_iso, EVENTS.c.actor, EVENTS.c.action,
                                            EVENTS.c.subject, EVENTS.c.payload)
                                  .order_by(EVENTS.c.id)).all()
        previous = GENESIS_HASH
        for event_id, at, actor, action, subject, payload in rows:
            digest = hash_text(event_text(event_id, at, actor, action, subject, payload, previous))
            connection.execute(sa.update(EVENTS).where(EVENTS.c.id == event_id)
                               .values(prev_hash=previous, hash=digest))
            previous = digest
        connection.execute(sa.update(HEAD).values(last_hash=previous))


def test_a_chain_recomputed_without_the_key_is_found(audited):
    # Before: an unkeyed sha256 chain, which anyone could recompute after this edit.
    with audited.begin() as connection:
        connection.execute(sa.update(EVENTS).where(EVENTS.c.id == 2).values(actor="mallory"))
    rewrite_chain(audited, lambda text: hashlib.sha256(text.encode()).hexdigest())
    result = verify_on(audited)
    assert not result.ok
    assert (result.broken.event_id, result.broken.reason) == (1, "hash mismatch (row edited)")


def test_verify_with_a_different_key_fails_naming_the_key(audited):
    other = AuditKey(b"another-key-of-at-least-32-characters!!", "test")
    result = verify_on(audited, key=other)
    assert not result.ok and result.broken.event_id == 1
    assert f"key id {other.key_id}" in result.broken.reason and "OUTBOUND_AUDIT_KEY" in result.broken.reason


def test_a_different_key_fails_even_when_the_head_forgets_its_key_id(audited):
    with audited.begin() as connection:
        connection.execute(sa.update(HEAD).values(key_id=None))
    other = AuditKey(b"another-key-of-at-least-32-characters!!", "test")
    assert verify_on(audited, key=other).broken.reason == "hash mismatch (row edited)"


def test_the_key_file_is_created_0600_at_first_use_and_then_reused(outbound_env):
    key_file = outbound_env / audit_key.KEY_FILE_NAME
    assert not key_file.exists()
    key = audit_key.current_key()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text().strip()) == 64
    audit_key._cache.clear()
    assert audit_key.current_key().secret == key.secret


def test_the_key_comes_from_the_environment_first(outbound_env, monkeypatch):
    monkeypatch.setenv("OUTBOUND_AUDIT_KEY", "k" * 40)
    assert audit_key.current_key().secret == b"k" * 40
    assert not (outbound_env / audit_key.KEY_FILE_NAME).exists()


def test_a_short_or_missing_key_is_refused_with_what_to_set(outbound_env, monkeypatch):
    monkeypatch.setenv("OUTBOUND_AUDIT_KEY", "short")
    with pytest.raises(audit_key.AuditKeyError, match="at least 32"):
        audit_key.current_key()
    monkeypatch.delenv("OUTBOUND_AUDIT_KEY")
    monkeypatch.setenv("OUTBOUND_AUDIT_KEY_FILE", str(outbound_env / "nowhere.key"))
    with pytest.raises(audit_key.AuditKeyError, match="OUTBOUND_AUDIT_KEY_FILE=.*no such file"):
        audit_key.current_key()


# --- anchors ----------------------------------------------------------------------------------

def test_an_anchor_finds_a_rewrite_made_with_the_key(audited):
    anchor = Anchor(*_head(audited))
    with session_scope(audited) as session:
        audit.append(session, actor="ann", action="later", subject=None, payload={}, at=AT)
    with audited.begin() as connection:
        connection.execute(sa.update(EVENTS).where(EVENTS.c.id == 2).values(actor="mallory"))
    key = audit_key.current_key()
    rewrite_chain(audited, lambda text: audit_key.keyed_hash(key, text))
    assert verify_on(audited).ok                  # the key holder's rewrite is consistent...
    result = verify_on(audited, anchor=anchor)    # ...but not with what compliance kept
    assert not result.ok and result.anchor == {"id": anchor.id, "hash": anchor.hash, "ok": False}
    assert result.broken.event_id == anchor.id and "anchored hash" in result.broken.reason


def test_an_anchor_passes_on_an_untouched_chain_and_later_appends(audited):
    anchor = Anchor(*_head(audited))
    with session_scope(audited) as session:
        audit.append(session, actor="ann", action="later", subject=None, payload={}, at=AT)
    result = verify_on(audited, anchor=anchor)
    assert result.ok and result.anchor["ok"] is True


def test_an_anchor_past_the_end_is_reported(audited):
    last_id, _ = _head(audited)
    result = verify_on(audited, anchor=Anchor(last_id + 5, "a" * 64))
    assert not result.ok and "is gone" in result.broken.reason


def _head(engine) -> tuple[int, str]:
    with engine.connect() as connection:
        row = connection.execute(sa.select(HEAD.c.last_id, HEAD.c.last_hash)).one()
    return row.last_id, row.last_hash


@pytest.mark.parametrize("text", ["12", "x:" + "a" * 64, "12:abc", "0:" + "a" * 64, "3:" + "g" * 64])
def test_a_malformed_anchor_is_refused(text):
    with pytest.raises(ValueError, match="expected ID:HASH"):
        Anchor.parse(text)


# --- CLI --------------------------------------------------------------------------------------

def audit_cli() -> typer.Typer:
    app = typer.Typer()
    audit_cmd.register(app)
    return app


@pytest.fixture
def cli_facts(outbound_env_db, state_list):
    engine = make_engine(outbound_env_db)
    migrations.upgrade_to_head(engine)
    facts(engine)
    yield engine
    engine.dispose()


def test_audit_anchor_prints_the_head_and_verify_accepts_it(cli_facts, cli_runner):
    printed = cli_runner.invoke(audit_cli(), ["audit", "anchor"])
    assert printed.exit_code == 0, printed.output
    event_id, digest = printed.output.strip().split(":")
    assert (int(event_id), digest) == _head(cli_facts)
    as_json = cli_runner.invoke(audit_cli(), ["audit", "anchor", "--json"])
    assert json.loads(as_json.output) == {"id": int(event_id), "hash": digest}
    verified = cli_runner.invoke(audit_cli(), ["audit", "verify", "--anchor", printed.output.strip()])
    assert verified.exit_code == 0, verified.output
    assert "audit chain intact" in verified.output and "fact rows intact" in verified.output


def test_audit_verify_exits_1_and_lists_a_changed_row(cli_facts, cli_runner):
    with cli_facts.begin() as connection:
        connection.execute(sa.delete(ENTRIES).where(ENTRIES.c.phone == "+13125550100"))
    result = cli_runner.invoke(audit_cli(), ["audit", "verify"])
    assert result.exit_code == 1
    assert "removed: dnc_entries row 1 is gone" in result.output
    as_json = json.loads(cli_runner.invoke(audit_cli(), ["audit", "verify", "--json"]).output)
    assert as_json["ok"] is False and as_json["broken"] is None
    assert as_json["rows"]["ok"] is False and as_json["rows"]["problems"][0]["table"] == "dnc_entries"


def test_audit_verify_refuses_a_malformed_anchor(cli_facts, cli_runner):
    result = cli_runner.invoke(audit_cli(), ["audit", "verify", "--anchor", "nonsense"])
    assert result.exit_code == 2 and "ID:HASH" in result.output


def test_audit_anchor_on_an_empty_log_exits_1(outbound_env, cli_runner):
    result = cli_runner.invoke(audit_cli(), ["audit", "anchor"])
    assert result.exit_code == 1


# --- upgrading a chain written before keys ----------------------------------------------------

def legacy_chain(engine, count: int) -> None:
    """A database at 0005 holding an unkeyed sha256 chain and a consent row, as old code wrote."""
    with engine.begin() as connection:
        previous = GENESIS_HASH
        for n in range(1, count + 1):
            payload = json.dumps({"n": n}, separators=(",", ":"))
            at_iso = audit.iso_utc(AT + timedelta(minutes=n))
            digest = hashlib.sha256(event_text(n, at_iso, "old", "consent.granted", None, payload,
                                               previous).encode()).hexdigest()
            connection.execute(sa.insert(EVENTS).values(id=n, at=AT + timedelta(minutes=n), actor="old",
                                                        action="consent.granted", subject=None,
                                                        payload=payload, prev_hash=previous, hash=digest))
            previous = digest
        connection.execute(sa.text("INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, :n, :h)"),
                           {"n": count, "h": previous})
        connection.execute(sa.insert(sa.table("consent_records", *[sa.column(c) for c in (
            "phone", "kind", "channels", "purposes", "seller", "granted_at", "evidence", "recorded_at",
            "recorded_by")])).values(phone="+12125550123", kind="written", channels="voice",
                                     purposes="telemarketing", seller="Acme", granted_at="2026-01-01 00:00:00.000000",
                                     evidence='{"certificate_id": "C"}', recorded_at="2026-01-01 00:00:00.000000",
                                     recorded_by="old"))


@pytest.fixture
def at_0005(empty_engine):
    migrations.upgrade_to_head(empty_engine)
    migrations.downgrade_to(empty_engine, "0005")
    return empty_engine


def test_the_upgrade_rekeys_an_intact_legacy_chain_and_baselines_the_rows(at_0005):
    legacy_chain(at_0005, 5)
    migrations.upgrade_to_head(at_0005)
    result = verify_on(at_0005)
    assert result.ok, result
    assert result.events_checked == 5 + 2 and result.rows.tables["consent_records"] == 1  # rekeyed, baseline
    with at_0005.connect() as connection:
        actions = connection.execute(sa.select(EVENTS.c.action).where(EVENTS.c.id > 5)
                                     .order_by(EVENTS.c.id)).scalars().all()
    assert actions[0] == "audit.rekeyed" and set(actions[1:]) == {"audit.rows_baseline"}
    with at_0005.begin() as connection:      # the baselined legacy row is now protected
        connection.execute(sa.update(CONSENTS).values(purposes="telemarketing informational"))
    assert problems(verify_on(at_0005)) == [("consent_records", 1, "edited")]


def test_the_upgrade_refuses_a_broken_legacy_chain(at_0005):
    legacy_chain(at_0005, 5)
    with at_0005.begin() as connection:
        connection.execute(sa.update(EVENTS).where(EVENTS.c.id == 3).values(actor="mallory"))
    with pytest.raises(Exception, match="upgrade to 0006 refused.*event 3"):
        migrations.upgrade_to_head(at_0005)
    assert migrations.current_revision(at_0005) == "0005"
    with at_0005.connect() as connection:      # nothing was re-keyed
        assert connection.execute(sa.select(EVENTS.c.actor).where(EVENTS.c.id == 3)).scalar_one() == "mallory"


# --- REST -------------------------------------------------------------------------------------

@pytest.fixture
def rest(env_api_users):
    from fastapi.testclient import TestClient

    from api.app import create_app
    return TestClient(create_app()), env_api_users.headers("compliance")


def test_rest_anchor_then_verify_with_it_and_a_changed_row(rest, env_api_users):
    client, headers = rest
    anchor = client.get("/v1/audit/anchor", headers=headers).json()
    assert set(anchor) == {"id", "hash"} and anchor["id"] >= 1
    verified = client.get("/v1/audit/verify", params={"anchor": f"{anchor['id']}:{anchor['hash']}"},
                          headers=headers).json()
    assert verified["ok"] is True and verified["anchor"]["ok"] is True and verified["rows"]["ok"] is True
    facts(env_api_users.engine)
    with env_api_users.engine.begin() as connection:
        connection.execute(sa.update(CONSENTS).values(kind="written", seller="Other"))
    changed = client.get("/v1/audit/verify", headers=headers).json()
    assert changed["ok"] is False and changed["broken"] is None
    assert [(p["table"], p["problem"]) for p in changed["rows"]["problems"]] == [
        ("consent_records", "edited"), ("consent_records", "edited")]
    bad = client.get("/v1/audit/verify", params={"anchor": "nonsense"}, headers=headers)
    assert bad.status_code == 422 and "ID:HASH" in bad.text
