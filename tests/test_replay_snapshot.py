"""Replay survives upgrades (issue 12 section 4): a stored decision keeps the dates it resolved
(holidays, the state entries in force) beside its rule pack, so a `holidays` upgrade, or a change
in how entries are picked, does not make it replay differently."""
from __future__ import annotations

import json
from datetime import date

import holidays as holidays_lib
import pytest
from sqlalchemy import text

from consent import holiday_calendar
from consent.check import check_one
from consent.rules import RulePack, load_pack
from consent.snapshot import SNAPSHOT_FORMAT, pack_from_snapshot, resolved_year, years_involved
from outbound.cli import app
from outbound.db import get_engine
from outbound.decisions import load_decision, resolved_key, store_decision
from outbound.db import session_scope
from outbound.replay import replay_decision

PIONEER_DAY = "Utah, Pioneer Day"


def _upgrade_holidays(monkeypatch) -> None:
    """What a `holidays` upgrade could do: a new version, and Utah's Pioneer Day gone from its list."""
    real = holidays_lib.US

    def changed(*args, **kwargs):
        found = real(*args, **kwargs)
        for day in [day for day, name in found.items() if "Pioneer" in name]:
            found.pop(day)
        return found

    monkeypatch.setattr(holidays_lib, "US", changed)
    monkeypatch.setattr(holidays_lib, "__version__", "99.0.0")
    load_pack.cache_clear()


def _decision_ids(titles=None) -> dict[str, str]:
    samples = json.loads((__import__("importlib").resources.files("outbound") / "samples" / "scenarios.json")
                         .read_text("utf-8"))
    with get_engine().connect() as connection:
        rows = connection.execute(text("SELECT id, scenario FROM decisions")).all()
    by_scenario = {json.dumps(json.loads(scenario), sort_keys=True): decision_id for decision_id, scenario in rows}
    return {sample["title"]: by_scenario[json.dumps(sample["scenario"], sort_keys=True)] for sample in samples}


def _stored_scenario(decision_id: str) -> str:
    with get_engine().connect() as connection:
        return connection.execute(text("SELECT scenario FROM decisions WHERE id = :i"), {"i": decision_id}).scalar_one()


def test_a_holidays_upgrade_leaves_every_stored_decision_identical(cli_runner, outbound_env_db, monkeypatch):
    assert cli_runner.invoke(app, ["gate", "whatif"]).exit_code == 0
    ids = _decision_ids()
    pioneer = next(decision_id for title, decision_id in ids.items() if title.startswith(PIONEER_DAY))
    before = replay_decision(pioneer)
    assert before.identical and '"holiday"' in before.stored

    _upgrade_holidays(monkeypatch)
    try:
        # The upgrade is real for new decisions: Pioneer Day is no holiday any more, under a new version.
        fresh = check_one(json.loads(_stored_scenario(pioneer)), load_pack())
        assert "holiday" not in [reason["code"] for reason in fresh["reasons"]]
        assert fresh["rules_version"] != json.loads(before.stored)["rules_version"]
        # ... and no stored decision replays differently.
        for title, decision_id in ids.items():
            result = replay_decision(decision_id)
            assert result.identical, (title, result.difference)
            replay = cli_runner.invoke(app, ["gate", "replay", decision_id, "--json"])
            assert replay.exit_code == 0 and json.loads(replay.stdout)["identical"] is True
    finally:
        load_pack.cache_clear()


def test_replay_from_a_snapshot_never_asks_the_library(cli_runner, outbound_env_db, monkeypatch):
    assert cli_runner.invoke(app, ["gate", "whatif"]).exit_code == 0
    ids = _decision_ids()

    def no_library(*args, **kwargs):
        raise AssertionError("replay asked the holidays library")

    monkeypatch.setattr(holidays_lib, "US", no_library)
    for title, decision_id in ids.items():
        assert replay_decision(decision_id).identical, title


def test_a_decision_stored_before_resolved_dates_replays_as_before(cli_runner, outbound_env_db):
    assert cli_runner.invoke(app, ["gate", "whatif"]).exit_code == 0
    ids = _decision_ids()
    with get_engine().begin() as connection:
        removed = connection.execute(text("DELETE FROM rule_packs WHERE version LIKE '%@%'")).rowcount
    assert removed >= 1
    for title, decision_id in ids.items():
        with session_scope(get_engine()) as session:
            _, pack_json = load_decision(session, decision_id)
        assert json.loads(pack_json).get("format") != SNAPSHOT_FORMAT      # the plain pack, as stored then
        assert replay_decision(decision_id).identical, title


def test_the_snapshot_holds_the_years_touched_and_is_stored_once(cli_runner, outbound_env_db):
    assert cli_runner.invoke(app, ["gate", "whatif"]).exit_code == 0
    assert cli_runner.invoke(app, ["gate", "whatif"]).exit_code == 0
    version = load_pack().version
    with get_engine().connect() as connection:
        keys = sorted(row[0] for row in connection.execute(text("SELECT version FROM rule_packs")))
        stored_2026 = connection.execute(text("SELECT pack FROM rule_packs WHERE version = :v"),
                                         {"v": resolved_key(version, 2026)}).scalar_one()
    # The samples are all in July 2026, and every defer among them finds an opening within days.
    assert keys == sorted([version, resolved_key(version, 2026)])
    year = json.loads(stored_2026)
    assert year["holidays"]["UT@" + year["entries"]["UT"][0]]["2026-07-24"].startswith("Pioneer Day")
    assert set(year["entries"]) == set(load_pack().state_codes())


def test_replay_says_when_the_entries_in_force_differ(cli_runner, outbound_env_db, monkeypatch):
    assert cli_runner.invoke(app, ["gate", "whatif"]).exit_code == 0
    pioneer = next(i for title, i in _decision_ids().items() if title.startswith(PIONEER_DAY))
    real = RulePack.state_rule

    def picks_none_for_utah(self, code, on):      # a code change in how entries are picked
        return None if code == "UT" else real(self, code, on)

    monkeypatch.setattr(RulePack, "state_rule", picks_none_for_utah)
    result = replay_decision(pioneer)
    assert not result.identical
    assert "entries in force in 2026 for UT" in result.difference


@pytest.mark.parametrize("at,verdict,until,years", [
    ("2026-07-15T19:00:00+00:00", "allow", None, [2026]),
    ("2026-01-02T19:00:00+00:00", "block", None, [2025, 2026]),
    ("2026-12-31T23:00:00+00:00", "defer", "2027-01-02T13:00:00+00:00", [2026, 2027]),
    ("2026-07-15T19:00:00+00:00", "defer", None, [2026, 2027]),       # nothing found within the search
])
def test_years_involved(at, verdict, until, years):
    from datetime import datetime

    assert list(years_involved(datetime.fromisoformat(at), verdict,
                               datetime.fromisoformat(until) if until else None)) == years


def test_a_snapshot_reads_back_the_dates_it_recorded():
    pack = load_pack()
    resolved = {2026: json.dumps(resolved_year(pack, 2026))}
    from consent.snapshot import snapshot_json

    replayed = pack_from_snapshot(snapshot_json(pack.to_json(), "stored-version", resolved))
    assert replayed.version == "stored-version"
    utah = pack.state_rule("UT", date(2026, 7, 24))
    assert holiday_calendar.holidays_for_year(replayed, utah, 2026) == holiday_calendar.holidays_for_year(pack, utah, 2026)
