"""Campaigns through the CLI and the API: lifecycle, idempotent start, refused input."""
from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlmodel import Session

from outbound.cli import app as cli
from outbound.db import ensure_schema, get_engine
from outbound.models import Attempt, AuditEvent, Campaign
from dispatch_support import add_contacts, new_york_phone

CREATE = ["campaign", "create", "spring", "--channel", "voice", "--purpose", "telemarketing",
          "--voice", "live", "--caller-id", "+12125550100", "--script", "Hi, this is Acme.",
          "--hours", "09:00-18:00", "--start-date", "2026-07-01", "--end-date", "2026-08-31",
          "--cps", "2", "--max-concurrent", "5", "--retry", "no-answer=4h:3", "--retry", "busy=30m:3", "--json"]


def run(cli_runner, *args):
    result = cli_runner.invoke(cli, list(args))
    return result, (json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else None)


def counts(model) -> int:
    ensure_schema(get_engine())
    with Session(get_engine()) as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def test_cli_lifecycle(outbound_env_db, cli_runner):
    result, created = run(cli_runner, *CREATE)
    assert result.exit_code == 0, result.output
    assert created["status"] == "draft"
    assert created["settings"]["retry"] == {"no-answer": {"delay_seconds": 14400, "max_attempts": 3},
                                            "busy": {"delay_seconds": 1800, "max_attempts": 3}}
    assert created["settings"]["hours"] == "09:00-18:00" and created["settings"]["cps"] == 2
    with Session(get_engine()) as session:
        add_contacts(session, created["id"], [new_york_phone(i) for i in range(100, 103)])
        session.commit()

    refused = cli_runner.invoke(cli, ["campaign", "start", "spring"])     # live telemarketing needs agents
    assert refused.exit_code != 0 and "no agent is defined" in " ".join(refused.output.split())
    assert cli_runner.invoke(cli, ["agent", "add", "ann", "--reach", "client:ann"]).exit_code == 0
    result, started = run(cli_runner, "campaign", "start", "spring", "--json")
    assert result.exit_code == 0 and started["status"] == "running" and started["attempts_changed"] == 3
    # Idempotent: a second start creates nothing more.
    result, again = run(cli_runner, "campaign", "start", "spring", "--json")
    assert again["attempts_changed"] == 0 and counts(Attempt) == 3

    assert run(cli_runner, "campaign", "pause", "spring", "--json")[1]["status"] == "paused"
    result, _ = run(cli_runner, "campaign", "start", "spring", "--json")
    assert result.exit_code == 1 and "use resume" in result.output
    assert run(cli_runner, "campaign", "resume", "spring", "--json")[1]["status"] == "running"

    result, status = run(cli_runner, "campaign", "status", "spring", "--json")
    assert result.exit_code == 0 and status["attempts"] == {"pending": 3}

    result, stopped = run(cli_runner, "campaign", "stop", "spring", "--json")
    assert stopped["status"] == "completed" and stopped["attempts_changed"] == 3
    assert run(cli_runner, "campaign", "status", "spring", "--json")[1]["attempts"] == {"cancelled": 3}
    with Session(get_engine()) as session:
        actions = list(session.execute(select(AuditEvent.action).where(AuditEvent.action.like("campaign.%"))
                                       .order_by(AuditEvent.id)).scalars())
    assert actions == ["campaign.created", "campaign.running", "campaign.running", "campaign.paused",
                       "campaign.running", "campaign.completed"]


def test_cli_list_shows_campaigns_newest_first_and_filters_by_status(outbound_env_db, cli_runner):
    assert run(cli_runner, "campaign", "list", "--json")[1] == {"campaigns": []}
    assert run(cli_runner, *CREATE)[0].exit_code == 0
    texts = [*CREATE[:2], "autumn", "--channel", "sms", "--purpose", "informational",
             "--caller-id", "+12125550100", "--script", "Reply STOP to opt out.", "--json"]
    assert run(cli_runner, *texts)[0].exit_code == 0
    assert run(cli_runner, "campaign", "stop", "spring", "--json")[0].exit_code == 0

    result, listed = run(cli_runner, "campaign", "list", "--json")
    assert result.exit_code == 0
    assert [(c["name"], c["status"], c["voice"]) for c in listed["campaigns"]] == [
        ("autumn", "draft", None), ("spring", "completed", "live")]
    assert [c["name"] for c in run(cli_runner, "campaign", "list", "--status", "draft", "--json")[1]["campaigns"]] == ["autumn"]
    text = cli_runner.invoke(cli, ["campaign", "list"]).stdout.splitlines()
    assert "autumn  (draft; sms informational)" in text[0] and "spring  (completed; voice telemarketing, live voice)" in text[1]

    result, error = run(cli_runner, "campaign", "list", "--status", "done", "--json")
    assert result.exit_code == 2 and error == {"error": "--status: 'done' is not one of draft, running, paused, completed"}


@pytest.mark.parametrize("option,value,message", [
    ("--hours", "21:00-23:00", "hours: 21:00-23:00 lies entirely outside the federal calling window 08:00-21:00"),
    ("--hours", "05:00-08:00", "hours: 05:00-08:00 lies entirely outside the federal calling window"),
    ("--hours", "18:00-09:00", "hours: '18:00-09:00': the start must be before the end"),
    ("--caller-id", "212-555-0100", "caller_id: '212-555-0100' is not a valid E.164 number"),
    ("--caller-id", "+1212", "caller_id: '+1212' is not a valid E.164 number"),
    ("--retry", "hangup=1h:2", "retry: 'hangup' is not one of no-answer, busy, failed, voicemail"),
    ("--retry", "busy=soon:2", "retry: 'soon' is not a duration"),
    ("--cps", "0", "settings.cps: Input should be greater than 0"),
    ("--end-date", "2026-06-01", "end_date 2026-06-01 is before start_date 2026-07-01"),
])
def test_cli_refuses_bad_input_and_stores_nothing(outbound_env, cli_runner, option, value, message):
    args = list(CREATE)
    args[args.index(option) + 1] = value
    result, body = run(cli_runner, *args)
    assert result.exit_code == 2
    assert message in body["error"]
    assert counts(Campaign) == 0 and counts(AuditEvent) == 0


def test_hours_partly_inside_the_legal_window_are_accepted(outbound_env, cli_runner):
    args = list(CREATE)
    args[args.index("--hours") + 1] = "19:00-23:00"         # 19:00-21:00 is usable; the gate trims the rest
    assert run(cli_runner, *args)[0].exit_code == 0


def test_duplicate_name_is_refused(outbound_env, cli_runner):
    assert run(cli_runner, *CREATE)[0].exit_code == 0
    result, body = run(cli_runner, *CREATE)
    assert result.exit_code == 2 and "already exists" in body["error"]


@pytest.fixture
def client(env_api_users):
    from api.app import create_app
    return TestClient(create_app(), headers=env_api_users.headers("manager"))


BODY = {"name": "api1", "channel": "sms", "purpose": "informational", "caller_id": "+12125550100",
        "script": "Your appointment is tomorrow. Reply STOP to opt out.",
        "settings": {"hours": "10:00-17:00", "cps": 1, "max_concurrent": 2,
                     "retry": {"failed": {"delay_seconds": 3600, "max_attempts": 2}}}}


def test_api_lifecycle(client):
    response = client.post("/v1/campaigns", json=BODY)
    assert response.status_code == 201, response.text
    campaign_id = response.json()["id"]
    with Session(get_engine()) as session:
        add_contacts(session, campaign_id, [new_york_phone(100), new_york_phone(101)])
        session.commit()
    started = client.post(f"/v1/campaigns/{campaign_id}/start")
    assert started.status_code == 200 and started.json()["attempts_changed"] == 2
    assert client.post(f"/v1/campaigns/{campaign_id}/resume").json()["status"] == "running"
    assert client.post(f"/v1/campaigns/{campaign_id}/pause").json()["status"] == "paused"
    assert client.post(f"/v1/campaigns/{campaign_id}/resume").json()["status"] == "running"
    status = client.get(f"/v1/campaigns/{campaign_id}").json()
    assert status["attempts"] == {"pending": 2} and status["campaign"]["settings"]["hours"] == "10:00-17:00"
    assert status["campaign"]["voice"] is None          # an sms campaign has no voice
    assert client.post(f"/v1/campaigns/{campaign_id}/stop").json()["status"] == "completed"
    conflict = client.post(f"/v1/campaigns/{campaign_id}/resume")
    assert conflict.status_code == 409 and "completed" in conflict.json()["detail"]
    assert client.get("/v1/campaigns/999").status_code == 404
    assert client.post("/v1/campaigns", json=BODY).status_code == 409


@pytest.mark.parametrize("change,field", [
    ({"caller_id": "2125550100"}, "caller_id"),
    ({"settings": {"hours": "22:00-23:30"}}, "settings.hours"),
    ({"channel": "fax"}, "channel"),
    ({"script": None}, "script"),
    ({"voice": "live"}, "voice"),
    ({"settings": {"retry": {"busy": {"delay_seconds": 10, "max_attempts": 2}}}}, "settings.retry.busy.delay_seconds"),
    ({"colour": "red"}, "colour"),
])
def test_api_refuses_bad_input_naming_the_field(client, change, field):
    response = client.post("/v1/campaigns", json={**BODY, **change})
    assert response.status_code == 422
    assert response.json()["detail"].startswith(f"{field}: ")
    assert counts(Campaign) == 0


def test_cli_create_gives_the_campaign_its_manager_or_stores_nothing(outbound_env_db, cli_runner):
    assert cli_runner.invoke(cli, ["user", "add", "maria", "--role", "manager"]).exit_code == 0
    assert cli_runner.invoke(cli, ["user", "add", "carl", "--role", "compliance"]).exit_code == 0
    for owner, message in (("nobody", "no user 'nobody'"), ("carl", "only a manager can own a campaign")):
        result = cli_runner.invoke(cli, [*CREATE[:-1], "--owner", owner])
        assert result.exit_code == 2 and message in " ".join(result.output.split())
    assert counts(Campaign) == 0
    result, created = run(cli_runner, *CREATE, "--owner", "maria")
    assert result.exit_code == 0, result.output
    with Session(get_engine()) as session:
        from outbound.users import find_user
        assert session.get(Campaign, created["id"]).owner_id == find_user(session, "maria").id


# --- changing settings ------------------------------------------------------------------------

def test_cli_update_changes_only_what_is_given_audits_both_versions_and_refuses_bad_input(outbound_env_db, cli_runner):
    assert run(cli_runner, *CREATE)[0].exit_code == 0
    result, changed = run(cli_runner, "campaign", "update", "spring", "--cps", "0.5", "--hours", "10:00-17:00",
                          "--retry", "voicemail=1d:2", "--json")
    assert result.exit_code == 0, result.output
    settings = changed["settings"]
    assert (settings["cps"], settings["hours"], settings["max_concurrent"]) == (0.5, "10:00-17:00", 5)
    assert settings["retry"] == {"voicemail": {"delay_seconds": 86400, "max_attempts": 2}}
    assert settings["start_date"] == "2026-07-01"
    with Session(get_engine()) as session:
        event = session.execute(select(AuditEvent).where(AuditEvent.action == "campaign.settings_changed")).scalar_one()
    payload = json.loads(event.payload)
    assert payload["before"]["cps"] == 2 and payload["after"]["cps"] == 0.5 and event.actor == "cli"

    for args, code, message in [
        (["--hours", "22:00-23:30"], 2, "settings.hours: "),
        (["--end-date", "2026-06-01"], 2, "end_date 2026-06-01 is before start_date 2026-07-01"),
        (["--retry", "never=1h:2"], 2, "retry: "),
        ([], 2, "nothing to change"),
    ]:
        refused, body = run(cli_runner, "campaign", "update", "spring", *args, "--json")
        assert refused.exit_code == code and message in body["error"], refused.output
    assert run(cli_runner, "campaign", "update", "nope", "--cps", "1", "--json")[0].exit_code == 1
    with Session(get_engine()) as session:
        assert session.execute(select(Campaign.settings)).scalar_one() == settings      # nothing stored


def test_api_patch_settings_of_a_running_campaign_but_not_of_a_completed_one(client):
    campaign_id = client.post("/v1/campaigns", json=BODY).json()["id"]
    assert client.post(f"/v1/campaigns/{campaign_id}/start").status_code == 200
    patched = client.patch(f"/v1/campaigns/{campaign_id}/settings", json={"max_concurrent": 7})
    assert patched.status_code == 200, patched.text
    assert patched.json()["settings"]["max_concurrent"] == 7 and patched.json()["settings"]["hours"] == "10:00-17:00"
    assert client.get(f"/v1/campaigns/{campaign_id}").json()["campaign"]["settings"]["max_concurrent"] == 7
    for body, field in [({"cps": 0}, "settings.cps"), ({"colour": "red"}, "settings.colour"),
                        ({"retry": {"busy": {"delay_seconds": 10, "max_attempts": 2}}},
                         "settings.retry.busy.delay_seconds")]:
        refused = client.patch(f"/v1/campaigns/{campaign_id}/settings", json=body)
        assert refused.status_code == 422 and refused.json()["detail"].startswith(f"{field}: "), refused.text
    assert client.patch(f"/v1/campaigns/{campaign_id}/settings", json={}).status_code == 422
    assert client.post(f"/v1/campaigns/{campaign_id}/stop").status_code == 200
    closed = client.patch(f"/v1/campaigns/{campaign_id}/settings", json={"cps": 2})
    assert closed.status_code == 409 and "completed" in closed.json()["detail"]
