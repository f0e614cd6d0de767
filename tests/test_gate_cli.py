"""The gate's interfaces: `outbound gate check`, `outbound gate replay`, `outbound demo`, and
POST /v1/gate/check, exactly as DESIGN.md's contract names them."""
from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from outbound.cli import app
from outbound.commands import gate_cmd
from outbound.db import get_engine

SAMPLES = json.loads(resources.files("outbound").joinpath("samples", "scenarios.json").read_text("utf-8"))
CONTRACT_KEYS = ["verdict", "reasons", "next_allowed_at", "timezones", "states", "rules_version"]


def _scenario(title_start: str) -> dict:
    return copy.deepcopy(next(s["scenario"] for s in SAMPLES if s["title"].startswith(title_start)))


def test_check_single_json_prints_one_contract_decision(cli_runner, outbound_env: Path, tmp_path: Path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps(_scenario("Florida closes")))
    result = cli_runner.invoke(app, ["gate", "check", str(path)])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)
    assert list(decision) == CONTRACT_KEYS
    assert decision["verdict"] == "defer"
    assert decision["reasons"][0]["rule"] == "state.FL.hours"
    assert decision["next_allowed_at"] == "2026-07-16T12:00:00Z"


def test_check_jsonl_decides_good_lines_and_names_the_bad_field(cli_runner, outbound_env: Path, tmp_path: Path):
    good = json.dumps(_scenario("New York"))
    bad = json.dumps({**_scenario("New York"), "contact": {"phone": "+12125550123", "colour": "red"}})
    path = tmp_path / "many.jsonl"
    path.write_text(f"{good}\n\n{bad}\n{good}\n")
    result = cli_runner.invoke(app, ["gate", "check", str(path)])
    assert result.exit_code == 2
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line.get("verdict") for line in lines] == ["allow", None, "allow"]
    assert lines[1] == {"error": "contact.colour: unknown field"}
    assert "line 3" in result.stderr


@pytest.mark.parametrize("change,field", [
    ({"at": "2026-07-15T19:00:00"}, "at: needs a time zone"),
    ({"channel": "fax"}, "channel:"),
    ({"purpose": "survey"}, "purpose:"),
    ({"surprise": 1}, "surprise: unknown field"),
])
def test_check_invalid_single_scenario_exits_2_with_the_field(cli_runner, outbound_env: Path, tmp_path: Path, change, field):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**_scenario("New York"), **change}))
    result = cli_runner.invoke(app, ["gate", "check", str(path)])
    assert result.exit_code == 2
    assert field in json.loads(result.stdout)["error"]
    assert "Traceback" not in result.output


def test_check_missing_at_and_not_json(cli_runner, outbound_env: Path, tmp_path: Path):
    scenario = _scenario("New York")
    del scenario["at"]
    (tmp_path / "no_at.json").write_text(json.dumps(scenario))
    (tmp_path / "junk.json").write_text("{not json")
    no_at = cli_runner.invoke(app, ["gate", "check", str(tmp_path / "no_at.json")])
    junk = cli_runner.invoke(app, ["gate", "check", str(tmp_path / "junk.json")])
    assert no_at.exit_code == junk.exit_code == 2
    assert "at: required field is missing" in no_at.stdout
    assert "not valid JSON" in junk.stdout


def test_parallel_check_keeps_input_order(cli_runner, outbound_env: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(gate_cmd, "PARALLEL_FROM_BYTES", 0)
    monkeypatch.setattr(gate_cmd, "CHUNK_LINES", 5)
    scenarios = [s["scenario"] for s in SAMPLES] * 3
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in scenarios))
    serial = cli_runner.invoke(app, ["gate", "check", str(path), "--workers", "1"])
    parallel = cli_runner.invoke(app, ["gate", "check", str(path), "--workers", "2"])
    assert serial.exit_code == 0, serial.output
    assert parallel.exit_code == 0, parallel.output
    assert serial.stdout == parallel.stdout
    assert len(parallel.stdout.splitlines()) == len(scenarios)


def test_whatif_stores_replayable_decisions_and_an_intact_audit_chain(cli_runner, outbound_env_db):
    result = cli_runner.invoke(app, ["gate", "whatif", "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout.splitlines()[-1])
    assert counts["allowed"] + counts["deferred"] + counts["blocked"] == len(SAMPLES)
    assert counts["blocked_by_reason"]["invalid_number"] == 1
    engine = get_engine()
    with engine.connect() as connection:
        ids = [row[0] for row in connection.execute(text("SELECT id FROM decisions"))]
    assert len(ids) == len(SAMPLES)
    for decision_id in ids:
        replay = cli_runner.invoke(app, ["gate", "replay", decision_id, "--json"])
        assert replay.exit_code == 0, replay.output
        assert json.loads(replay.stdout)["identical"] is True
    assert cli_runner.invoke(app, ["audit", "verify"]).exit_code == 0


def test_replay_reports_a_stored_decision_that_no_longer_matches(cli_runner, outbound_env_db):
    assert cli_runner.invoke(app, ["gate", "whatif"]).exit_code == 0
    engine = get_engine()
    with engine.begin() as connection:
        decision_id, stored = connection.execute(
            text("SELECT id, decision FROM decisions WHERE verdict = 'defer' ORDER BY id LIMIT 1")).one()
        forged = stored.replace('"defer"', '"allow"')
        connection.execute(text("UPDATE decisions SET decision = :d WHERE id = :i"), {"d": forged, "i": decision_id})
    replay = cli_runner.invoke(app, ["gate", "replay", decision_id, "--json"])
    assert replay.exit_code == 1
    result = json.loads(replay.stdout)
    assert result["identical"] is False
    assert "verdict" in result["difference"]
    unknown = cli_runner.invoke(app, ["gate", "replay", "no-such-id"])
    assert unknown.exit_code == 2


def test_api_gate_check_answers_the_same_decision(cli_runner, env_api_users, tmp_path: Path):
    scenario = _scenario("Texas Sunday")
    path = tmp_path / "tx.json"
    path.write_text(json.dumps(scenario))
    cli = json.loads(cli_runner.invoke(app, ["gate", "check", str(path)]).stdout)
    client = TestClient(create_app(), headers=env_api_users.headers("compliance"))
    response = client.post("/v1/gate/check", json=scenario)
    assert response.status_code == 200
    assert response.json() == cli
    invalid = client.post("/v1/gate/check", json={**scenario, "voice": "robot"})
    assert invalid.status_code == 422
    assert invalid.json()["error"].startswith("voice:")
