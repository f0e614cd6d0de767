"""Storage foundation: settings, engines, migrations (both backends), instants, decisions."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
import typer
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import Session, SQLModel, select

from outbound import audit
from outbound.commands import COMMAND_MODULES, db_cmd
from outbound.db import (current_revision, ensure_schema, get_engine, make_engine, masked_url,
                         session_scope)
from outbound.decisions import RulePackConflict, load_decision, store_decision, subject_phone
from outbound.migrations import downgrade_to, head_revision
from outbound.models import AuditEvent, Campaign, Contact, Decision, RulePackSnapshot
from outbound.settings import SettingsError, get_settings, load_settings, parse_env_file

UTC = timezone.utc
T0 = datetime(2026, 7, 15, 16, 0, tzinfo=UTC)
MODEL_TABLES = set(SQLModel.metadata.tables)


def table_names(engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def schema_diff(engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, SQLModel.metadata)


# --- settings ---------------------------------------------------------------------------------

def test_settings_defaults_put_the_database_in_the_data_dir(tmp_path):
    settings = load_settings(environ={}, env_file=tmp_path / "absent.env")
    assert settings.data_dir == Path(".outbound")
    assert settings.database_url == f"sqlite:///{Path('.outbound/outbound.db').resolve()}"
    assert settings.telephony == "simulator"
    assert settings.twilio_account_sid is None and settings.public_url is None


def test_settings_read_the_env_file_and_the_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# local settings\n"
        "\n"
        "OUTBOUND_DATA_DIR=/srv/outbound   # where the SQLite file lives\n"
        "export OUTBOUND_TELEPHONY='twilio'\n"
        'OUTBOUND_TWILIO_AUTH_TOKEN="se#cret # not a comment"\n'
        "OUTBOUND_PUBLIC_URL=https://example.test/hooks#frag\n"
        "OUTBOUND_TWILIO_ACCOUNT_SID=ACfromfile\n")
    settings = load_settings(environ={"OUTBOUND_TWILIO_ACCOUNT_SID": "ACfromenv"}, env_file=env_file)
    assert settings.data_dir == Path("/srv/outbound")
    assert settings.database_url == "sqlite:////srv/outbound/outbound.db"
    assert settings.telephony == "twilio"
    assert settings.twilio_auth_token == "se#cret # not a comment"
    assert settings.public_url == "https://example.test/hooks#frag"
    assert settings.twilio_account_sid == "ACfromenv"


def test_an_explicit_database_url_is_used_as_given():
    settings = load_settings(environ={"OUTBOUND_DATABASE_URL": "postgresql://u:p@db/outbound"},
                             env_file=Path("/nonexistent/.env"))
    assert settings.database_url == "postgresql://u:p@db/outbound"


@pytest.mark.parametrize("line,message", [
    ("OUTBOUND_DATA_DIR", "expected KEY=VALUE"),
    ("=value", "expected KEY=VALUE"),
    ("OUTBOUND DATA=1", "expected KEY=VALUE"),
    ("OUTBOUND_TELEPHONY='twilio", "unterminated ' quote"),
    ('OUTBOUND_TELEPHONY="twilio" extra', "unexpected text 'extra'"),
])
def test_a_malformed_env_line_is_refused_with_its_line_number(line, message):
    with pytest.raises(SettingsError, match=rf"\.env:2: {message}"):
        parse_env_file(f"# ok\n{line}\n")


def test_get_settings_follows_environment_changes(outbound_env, monkeypatch):
    assert get_settings().data_dir == outbound_env
    monkeypatch.setenv("OUTBOUND_TELEPHONY", "twilio")
    assert get_settings().telephony == "twilio"


def test_get_settings_reads_dot_env_in_the_current_directory(outbound_env, monkeypatch):
    monkeypatch.delenv("OUTBOUND_DATABASE_URL")
    Path(".env").write_text("OUTBOUND_PUBLIC_URL=https://hooks.example.test\n")
    settings = get_settings()
    assert settings.public_url == "https://hooks.example.test"
    assert settings.database_url == f"sqlite:///{(outbound_env / 'outbound.db').resolve()}"


# --- engines and sessions ---------------------------------------------------------------------

def test_sqlite_engine_creates_its_directory_and_sets_wal_foreign_keys_and_busy_timeout(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'a' / 'b' / 'outbound.db'}")
    try:
        with engine.connect() as connection:
            pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") > 0
        assert (tmp_path / "a" / "b" / "outbound.db").exists()
    finally:
        engine.dispose()


def test_get_engine_is_shared_per_url(outbound_env):
    assert get_engine() is get_engine()
    assert get_engine().url.database == str(outbound_env / "outbound.db")


def test_masked_url_hides_the_password():
    assert masked_url("postgresql+psycopg2://app:s3cret@db:5432/outbound") == \
        "postgresql+psycopg2://app:***@db:5432/outbound"
    assert masked_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_session_scope_commits_on_success_and_rolls_back_on_error(engine):
    with session_scope(engine) as session:
        session.add(Campaign(name="kept", created_at=T0, updated_at=T0))
    with pytest.raises(RuntimeError, match="boom"):
        with session_scope(engine) as session:
            session.add(Campaign(name="discarded", created_at=T0, updated_at=T0))
            session.flush()
            raise RuntimeError("boom")
    with Session(engine) as session:
        assert session.exec(select(Campaign.name)).all() == ["kept"]


def test_foreign_keys_are_enforced(session):
    session.add(Contact(campaign_id=999, e164="+12125550123", phone_raw="212 555 0123",
                        created_at=T0))
    with pytest.raises(sa.exc.IntegrityError):
        session.flush()


# --- migrations -------------------------------------------------------------------------------

def test_upgrade_creates_every_table_and_is_idempotent(empty_engine):
    assert current_revision(empty_engine) is None
    assert ensure_schema(empty_engine) == head_revision()
    assert MODEL_TABLES <= table_names(empty_engine)
    assert ensure_schema(empty_engine) == head_revision()       # second run: nothing to do


def test_downgrade_drops_everything_and_upgrade_rebuilds(empty_engine):
    ensure_schema(empty_engine)
    assert downgrade_to(empty_engine, "base") is None
    assert table_names(empty_engine) - {"alembic_version"} == set()
    ensure_schema(empty_engine)
    assert schema_diff(empty_engine) == []


def test_migrated_schema_equals_the_models(engine):
    assert schema_diff(engine) == []


def test_schema_comparison_notices_a_missing_index(engine):
    # Guards the test above: the comparison must be able to see a difference at all.
    with engine.begin() as connection:
        connection.execute(sa.text("DROP INDEX ix_decisions_phone"))
    assert [("add_index", "ix_decisions_phone")] == [(d[0], d[1].name) for d in schema_diff(engine)]


def test_concurrent_upgrades_of_a_fresh_database_both_succeed(empty_engine):
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            ensure_schema(empty_engine)
        except BaseException as exc:        # reported below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert current_revision(empty_engine) == head_revision()


def test_upgrade_clears_the_voice_the_old_default_gave_sms_campaigns(empty_engine):
    ensure_schema(empty_engine)
    downgrade_to(empty_engine, "0001")
    with empty_engine.begin() as connection:
        for name, channel in (("texts", "sms"), ("calls", "voice")):
            connection.execute(sa.text(
                "INSERT INTO campaigns (name, status, channel, purpose, voice, automated, settings, created_at, updated_at) "
                "VALUES (:name, 'draft', :channel, 'informational', 'live', true, '{}', :at, :at)"),
                {"name": name, "channel": channel, "at": T0})
    ensure_schema(empty_engine)
    with Session(empty_engine) as session:
        voices = dict(session.execute(select(Campaign.name, Campaign.voice)).all())
    assert voices == {"texts": None, "calls": "live"}


def test_migrations_ship_inside_the_package():
    versions = Path(__file__).resolve().parents[1] / "outbound" / "migrations" / "versions"
    assert (versions / "0001_initial.py").is_file()
    assert head_revision() == "0009"


# --- instants ---------------------------------------------------------------------------------

def test_naive_datetimes_are_refused(session):
    session.add(Campaign(name="naive", created_at=datetime(2026, 7, 15, 16, 0), updated_at=T0))
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        session.flush()


def test_aware_datetimes_come_back_as_the_same_instant_in_utc(engine):
    new_york = timezone(timedelta(hours=-4))
    stored = datetime(2026, 7, 15, 12, 0, 0, 123456, tzinfo=new_york)
    with session_scope(engine) as session:
        session.add(Campaign(name="c", created_at=stored, updated_at=T0))
    with Session(engine) as session:
        loaded = session.exec(select(Campaign)).one()
    assert loaded.created_at == stored
    assert loaded.created_at.tzinfo == UTC
    assert loaded.created_at.isoformat() == "2026-07-15T16:00:00.123456+00:00"


# --- decisions --------------------------------------------------------------------------------

SCENARIO = {"at": "2026-07-15T16:00:00Z", "channel": "voice", "purpose": "telemarketing",
            "contact": {"phone": "(212) 555-0123", "state": "NY"}}
DECISION = {"verdict": "defer", "next_allowed_at": "2026-07-16T12:00:00Z",
            "reasons": [{"code": "calling_window", "rule": "state.NY.hours", "detail": "…"},
                        {"code": "holiday", "rule": "state.NY.holidays", "detail": "…"}],
            "timezones": ["America/New_York"], "states": ["NY"], "rules_version": "2026.07.1"}
PACK = json.dumps({"version": "2026.07.1", "federal": {"hours": [8, 21]}})


def store(session, **overrides):
    arguments = dict(scenario=SCENARIO, decision=DECISION, rules_version="2026.07.1",
                     rule_pack_json=PACK, attempt_id=None, actor="worker-1", at=T0)
    return store_decision(session, **{**arguments, **overrides})


def test_a_stored_decision_loads_back_with_its_inputs_and_rule_pack(engine):
    with session_scope(engine) as session:
        decision_id = store(session, attempt_id=7).id
    with Session(engine) as session:
        row, pack = load_decision(session, decision_id)
    assert pack == PACK
    assert (row.phone, row.verdict, row.attempt_id, row.decided_at) == ("+12125550123", "defer", 7, T0)
    assert json.loads(row.scenario) == SCENARIO and json.loads(row.decision) == DECISION
    assert row.decision == json.dumps(DECISION, sort_keys=True, separators=(",", ":"),
                                      ensure_ascii=False)


def test_storing_a_decision_writes_its_audit_event_in_the_same_transaction(engine):
    with session_scope(engine) as session:
        decision_id = store(session).id
    with Session(engine) as session:
        event = session.exec(select(AuditEvent)).one()
        assert (event.action, event.subject, event.actor) == ("gate.decision", decision_id, "worker-1")
        assert json.loads(event.payload) == {"verdict": "defer",
                                             "reasons": ["calling_window", "holiday"],
                                             "rules_version": "2026.07.1", "phone": "+12125550123"}
        assert audit.verify(session).ok


def test_a_rolled_back_decision_leaves_neither_row_nor_audit_event(engine):
    with pytest.raises(RuntimeError):
        with session_scope(engine) as session:
            store(session)
            raise RuntimeError("the dial failed before commit")
    with Session(engine) as session:
        assert session.exec(select(Decision)).all() == []
        assert session.exec(select(AuditEvent)).all() == []


def test_the_rule_pack_is_stored_once_per_version(engine):
    with session_scope(engine) as session:
        first, second = store(session).id, store(session).id
    with Session(engine) as session:
        assert session.exec(select(RulePackSnapshot.version)).all() == ["2026.07.1"]
        assert load_decision(session, first)[1] == load_decision(session, second)[1] == PACK


def test_a_different_pack_under_a_stored_version_is_refused(session):
    store(session)
    with pytest.raises(RulePackConflict, match="'2026.07.1' is already stored with different content"):
        store(session, rule_pack_json=PACK.replace("21", "20"))


def test_a_decision_naming_another_rules_version_is_refused(session):
    with pytest.raises(ValueError, match="decision names rules_version '2026.07.1'"):
        store(session, rules_version="2025.01.1")


def test_a_decision_without_a_known_verdict_is_refused(session):
    with pytest.raises(ValueError, match="verdict must be one of allow, defer, block, not 'maybe'"):
        store(session, decision={**DECISION, "verdict": "maybe"})


def test_loading_an_unknown_decision_gives_none(session):
    assert load_decision(session, "0" * 32) is None


@pytest.mark.parametrize("phone,stored", [
    ("(212) 555-0123", "+12125550123"),
    ("+1 212 555 0123", "+12125550123"),
    ("555-0123", "555-0123"),          # not a valid number: kept as given, for the record
    ("", ""),
])
def test_the_decision_phone_is_e164_when_valid(phone, stored):
    assert subject_phone({"contact": {"phone": phone}}) == stored


# --- CLI --------------------------------------------------------------------------------------

def db_cli() -> typer.Typer:
    app = typer.Typer()
    db_cmd.register(app)
    return app


def test_db_commands_are_registered():
    assert "outbound.commands.db_cmd" in COMMAND_MODULES
    assert "outbound.commands.audit_cmd" in COMMAND_MODULES


def test_db_upgrade_then_current(outbound_env_db, cli_runner):
    before = cli_runner.invoke(db_cli(), ["db", "current"])
    assert before.exit_code == 0, before.output
    assert "(none)" in before.output and "behind" in before.output

    upgraded = cli_runner.invoke(db_cli(), ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"database at revision {head_revision()}" in upgraded.output
    assert masked_url(outbound_env_db) in upgraded.output

    now = cli_runner.invoke(db_cli(), ["db", "current", "--json"])
    assert json.loads(now.output) == {"revision": head_revision(), "head": head_revision(),
                                      "url": masked_url(outbound_env_db), "up_to_date": True}


def test_db_upgrade_on_a_fresh_machine_creates_the_data_dir(outbound_env, cli_runner):
    result = cli_runner.invoke(db_cli(), ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (outbound_env / "outbound.db").is_file()
