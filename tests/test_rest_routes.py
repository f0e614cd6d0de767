"""The /v1 routes that mirror the rest of the CLI: users and tokens, audit, decisions and replay,
reports, DNC, contacts and attempts, consent import, campaign listing and simulate; and how far
a manager sees (their own campaigns' data only)."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import Session

from api.app import create_app
from outbound.cli import app as cli
from outbound.db import get_engine
from outbound.models import AuditEvent, Campaign
from outbound.user_tables import User
from outbound.users import create_token
from tests.report_support import T0, add_campaign, add_decision, reason


@pytest.fixture
def client(env_api_users) -> TestClient:
    return TestClient(create_app())


@pytest.fixture
def as_role(env_api_users):
    return env_api_users.headers


def actors_of(action: str) -> list[str]:
    with Session(get_engine()) as session:
        return list(session.scalars(select(AuditEvent.actor).where(AuditEvent.action == action)))


# --- users and tokens ---------------------------------------------------------------------------

def test_an_admin_adds_a_user_who_makes_their_own_token_shown_once(client, as_role):
    created = client.post("/v1/users", json={"name": "cora", "role": "compliance"}, headers=as_role("admin"))
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    # The first token comes from the operator's CLI (`outbound token create cora`), audited too.
    with Session(get_engine()) as session:
        first = create_token(session, session.get(User, user_id), actor="cli:operator", at=T0).token
        session.commit()
    cora = {"Authorization": f"Bearer {first}"}
    token = client.post(f"/v1/users/{user_id}/tokens", json={"label": "laptop"}, headers=cora)
    assert token.status_code == 201, token.text
    secret = token.json()["token"]
    assert client.get("/v1/audit/verify", headers={"Authorization": f"Bearer {secret}"}).json()["ok"] is True
    listed = client.get("/v1/tokens", params={"user_id": user_id}, headers=as_role("admin"))
    assert secret not in listed.text and [t["label"] for t in listed.json()] == ["", "laptop"]
    revoked = client.delete(f"/v1/tokens/{token.json()['id']}", headers=as_role("admin"))
    assert revoked.json()["revoked_at"] is not None
    assert client.get("/v1/audit/verify", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert actors_of("user.created")[-1] == "admin" and actors_of("token.revoked") == ["admin"]
    assert actors_of("token.created")[-2:] == ["cli:operator", "cora"]


def test_an_admin_cannot_mint_a_token_for_another_role_and_nobody_for_someone_else(client, env_api_users):
    ids, headers = env_api_users.ids, env_api_users.headers
    before = len(actors_of("token.created"))
    refused = client.post(f"/v1/users/{ids['compliance']}/tokens", json={}, headers=headers("admin"))
    assert refused.status_code == 403 and "only for admins" in refused.json()["detail"]
    for role in ("manager", "compliance", "agent"):
        other = ids["admin"] if role != "manager" else ids["compliance"]
        assert client.post(f"/v1/users/{other}/tokens", json={}, headers=headers(role)).status_code == 404
    assert len(actors_of("token.created")) == before                 # nothing was made
    own = client.post(f"/v1/users/{ids['manager']}/tokens", json={"label": "ci"}, headers=headers("manager"))
    assert own.status_code == 201
    second_admin = client.post("/v1/users", json={"name": "root2", "role": "admin"}, headers=headers("admin")).json()
    assert client.post(f"/v1/users/{second_admin['id']}/tokens", json={}, headers=headers("admin")).status_code == 201
    assert actors_of("token.created")[before:] == ["manager", "admin"]


def test_an_admin_resets_a_password_the_users_sessions_end_and_it_is_audited(client, env_api_users):
    from outbound.users import login, user_for_session

    manager_id = env_api_users.ids["manager"]
    with Session(get_engine()) as session:
        old_session, _user = login(session, "manager", "an old password", at=T0) or (None, None)
    assert old_session is None                                      # token-only user so far
    short = client.post(f"/v1/users/{manager_id}/password", json={"password": "short"},
                        headers=env_api_users.headers("admin"))
    assert short.status_code == 422
    reset = client.post(f"/v1/users/{manager_id}/password", json={"password": "a new passphrase"},
                        headers=env_api_users.headers("admin"))
    assert reset.status_code == 200 and reset.json()["has_password"] is True
    with Session(get_engine()) as session:
        signed_in, _user = login(session, "manager", "a new passphrase", at=datetime.now(timezone.utc))
        session.commit()
    assert client.post(f"/v1/users/{manager_id}/password", json={"password": "another passphrase"},
                       headers=env_api_users.headers("admin")).status_code == 200
    with Session(get_engine()) as session:
        assert user_for_session(session, signed_in, at=datetime.now(timezone.utc)) is None
    assert actors_of("user.password_reset") == ["admin", "admin"]
    assert client.post(f"/v1/users/{manager_id}/password", json={"password": "x" * 12},
                       headers=env_api_users.headers("manager")).status_code == 403


@pytest.mark.parametrize("body,status,message", [
    ({"name": "cora", "role": "boss"}, 422, None),
    ({"name": "cora", "role": "agent", "password": "short"}, 422, "password: at least 10 characters"),
    ({"name": "manager", "role": "agent"}, 422, "already exists"),
    ({"name": "bad\u0000name", "role": "agent"}, 422, "name: 1 to 100 printable characters"),
])
def test_post_user_refuses_unusable_input(client, as_role, body, status, message):
    response = client.post("/v1/users", json=body, headers=as_role("admin"))
    assert response.status_code == status
    if message:
        assert message in response.json()["detail"]


def test_deactivating_a_user_locks_them_out_but_an_admin_cannot_lock_themselves_out(client, env_api_users):
    admin = env_api_users.headers("admin")
    manager_id, admin_id = env_api_users.ids["manager"], env_api_users.ids["admin"]
    assert client.post(f"/v1/users/{manager_id}/deactivate", headers=admin).json()["active"] is False
    assert client.get("/v1/campaigns", headers=env_api_users.headers("manager")).status_code == 401
    assert client.post(f"/v1/users/{admin_id}/deactivate", headers=admin).status_code == 409
    assert client.post(f"/v1/users/{manager_id}/activate", headers=admin).json()["active"] is True
    assert client.get("/v1/campaigns", headers=env_api_users.headers("manager")).status_code == 200


def test_an_admin_gives_a_cli_campaign_to_a_manager(client, env_api_users, cli_runner):
    with Session(get_engine()) as session:
        campaign_id = add_campaign(session, "from-cli", owner_id=None).id      # the CLI sets no owner
        session.commit()
    manager = env_api_users.headers("manager")
    assert client.get(f"/v1/campaigns/{campaign_id}", headers=manager).status_code == 404
    refused = client.put(f"/v1/campaigns/{campaign_id}/owner", json={"user_id": env_api_users.ids["agent"]},
                         headers=env_api_users.headers("admin"))
    assert refused.status_code == 422 and "only a manager" in refused.json()["detail"]
    given = client.put(f"/v1/campaigns/{campaign_id}/owner", json={"user_id": env_api_users.ids["manager"]},
                       headers=env_api_users.headers("admin"))
    assert given.json()["owner_id"] == env_api_users.ids["manager"]
    assert client.get(f"/v1/campaigns/{campaign_id}", headers=manager).status_code == 200
    env_api_users.add("max", "manager")
    assert cli_runner.invoke(cli, ["user", "own", "max", "from-cli"]).exit_code == 0
    assert client.get(f"/v1/campaigns/{campaign_id}", headers=manager).status_code == 404
    assert actors_of("campaign.owner_changed")[0] == "admin"


# --- audit, decisions, replay -------------------------------------------------------------------

def test_audit_verify_and_events(client, as_role):
    result = client.get("/v1/audit/verify", headers=as_role("compliance")).json()
    assert result["ok"] is True and result["events_checked"] == 8        # 4 users + 4 tokens
    events = client.get("/v1/audit/events", params={"limit": 2}, headers=as_role("compliance")).json()
    assert [event["action"] for event in events] == ["user.created", "token.created"]
    with get_engine().begin() as connection:
        connection.exec_driver_sql("UPDATE audit_events SET actor = 'mallory' WHERE id = 3")
    broken = client.get("/v1/audit/verify", headers=as_role("compliance")).json()
    assert broken["ok"] is False and broken["broken"]["event_id"] == 3


def test_decisions_of_a_phone_one_decision_and_its_replay(client, as_role, cli_runner):
    assert cli_runner.invoke(cli, ["gate", "whatif"]).exit_code == 0
    with Session(get_engine()) as session:
        from outbound.models import Decision
        stored = session.scalars(select(Decision).where(Decision.verdict == "block")).first()
    listed = client.get("/v1/decisions", params={"phone": stored.phone}, headers=as_role("compliance"))
    assert stored.id in [row["decision_id"] for row in listed.json()]
    one = client.get(f"/v1/decisions/{stored.id}", headers=as_role("compliance")).json()
    assert one["verdict"] == "block" and one["scenario"]["contact"]["phone"]
    replay = client.post(f"/v1/decisions/{stored.id}/replay", headers=as_role("compliance")).json()
    assert replay["identical"] is True and replay["difference"] == ""
    assert client.get("/v1/decisions/" + "0" * 32, headers=as_role("compliance")).status_code == 404
    assert client.get("/v1/decisions/not-an-id", headers=as_role("compliance")).status_code == 422
    assert client.get("/v1/decisions", params={"phone": "12345"}, headers=as_role("compliance")).status_code == 422


# --- reports ------------------------------------------------------------------------------------

@pytest.fixture
def two_managers_campaigns(env_api_users):
    other_id, other = env_api_users.add("max", "manager")
    with Session(get_engine()) as session:
        mine = add_campaign(session, "mine", env_api_users.ids["manager"])
        theirs = add_campaign(session, "theirs", other_id)
        add_decision(session, mine, "+12125550123", "block", [reason("dnc_national", "-1+2")])
        add_decision(session, theirs, "+12125550124", "defer", [reason("calling_window")])
        session.commit()
        return {"mine": mine.id, "theirs": theirs.id, "other": other}


def test_a_manager_reports_only_their_own_campaigns_compliance_all(client, as_role, two_managers_campaigns):
    mine = client.get("/v1/reports/decisions", headers=as_role("manager")).json()
    assert [row["campaign"] for row in mine] == ["mine"]
    everything = client.get("/v1/reports/summary", headers=as_role("compliance")).json()
    assert everything["by_campaign"] == {"mine": 1, "theirs": 1}
    blocked = client.get("/v1/reports/decisions", params={"verdict": "block", "state": "ny"},
                         headers=as_role("compliance")).json()
    assert [row["campaign"] for row in blocked] == ["mine"]
    series = client.get("/v1/reports/by-reason-over-time", headers=as_role("compliance")).json()
    assert {point["reason"] for point in series} == {"dnc_national", "calling_window"}


def test_the_report_csv_is_an_attachment_safe_from_formulas(client, as_role, two_managers_campaigns):
    response = client.get("/v1/reports/decisions.csv", params={"reason": "dnc_national"},
                          headers=as_role("compliance"))
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    [row] = list(csv.DictReader(io.StringIO(response.text)))
    assert row["details"] == "'-1+2" and row["campaign"] == "mine"


@pytest.mark.parametrize("params,message", [
    ({"reason": "x y"}, "reason:"), ({"since": "2026-07-15T00:00:00"}, "since: give a time zone"),
])
def test_unusable_report_filters_are_422(client, as_role, params, message):
    response = client.get("/v1/reports/decisions", params=params, headers=as_role("compliance"))
    assert response.status_code == 422 and message in response.json()["detail"]


# --- campaigns, contacts and attempts -----------------------------------------------------------

def test_contacts_attempts_and_campaign_list_are_scoped_to_the_owner(client, as_role, two_managers_campaigns):
    ids, other = two_managers_campaigns, two_managers_campaigns["other"]
    assert [c["name"] for c in client.get("/v1/campaigns", headers=as_role("manager")).json()] == ["mine"]
    assert {c["name"] for c in client.get("/v1/campaigns", headers=as_role("compliance")).json()} == {"mine", "theirs"}
    contacts = client.get(f"/v1/campaigns/{ids['mine']}/contacts", headers=as_role("manager")).json()
    assert [c["e164"] for c in contacts] == ["+12125550123"]
    assert client.get(f"/v1/campaigns/{ids['mine']}/contacts", headers=other).status_code == 404
    assert client.get(f"/v1/contacts/{contacts[0]['id']}", headers=other).status_code == 404
    attempts = client.get("/v1/attempts", headers=as_role("manager")).json()
    assert [a["campaign_id"] for a in attempts] == [ids["mine"]] and attempts[0]["status"] == "blocked"
    assert client.get(f"/v1/attempts/{attempts[0]['id']}", headers=other).status_code == 404
    assert len(client.get("/v1/attempts", params={"status": "pending"}, headers=as_role("compliance")).json()) == 1


def test_a_manager_reads_conversations_of_their_own_contacts_only(client, as_role, two_managers_campaigns):
    other = two_managers_campaigns["other"]
    assert client.get("/v1/contacts/2125550123/conversation", headers=as_role("manager")).status_code == 200
    assert client.get("/v1/contacts/2125550123/conversation", headers=other).status_code == 404
    assert client.get("/v1/contacts/2125550124/conversation", headers=other).status_code == 200
    assert client.get("/v1/contacts/2125550123/conversation", headers=as_role("compliance")).status_code == 200


def test_simulate_is_a_dry_run_of_the_managers_campaign(client, as_role, env_api_users):
    body = {"name": "dry", "channel": "sms", "purpose": "informational", "caller_id": "+12125550100",
            "script": "Your appointment is tomorrow. Reply STOP to opt out."}
    campaign_id = client.post("/v1/campaigns", json=body, headers=as_role("manager")).json()["id"]
    result = client.post(f"/v1/campaigns/{campaign_id}/simulate", json={"start": "2026-11-02T13:00:00Z", "days": 2},
                         headers=as_role("manager"))
    assert result.status_code == 200, result.text
    assert result.json()["campaign"] == "dry" and result.json()["contacts"] == 0
    naive = client.post(f"/v1/campaigns/{campaign_id}/simulate", json={"start": "2026-11-02T13:00:00"},
                        headers=as_role("manager"))
    assert naive.status_code == 422
    with Session(get_engine()) as session:
        assert session.get(Campaign, campaign_id).status == "draft"


# --- DNC and consent import ---------------------------------------------------------------------

def test_internal_dnc_add_status_lookup_and_remove(client, as_role):
    compliance = as_role("compliance")
    added = client.post("/v1/dnc/internal", json={"phone": "(212) 555-0123", "reason": "asked on the phone"},
                        headers=compliance)
    assert added.json() == {"phone": "+12125550123", "changed": True}
    again = client.post("/v1/dnc/internal", json={"phone": "2125550123", "reason": "again"}, headers=compliance)
    assert again.json()["changed"] is False
    assert client.get("/v1/dnc/numbers/2125550123", headers=compliance).json()["internal"] is True
    status = {row["source"]: row for row in client.get("/v1/dnc/status", headers=compliance).json()}
    assert any(name.startswith("internal") for name in status)
    removed = client.post("/v1/dnc/internal/remove", json={"phone": "2125550123", "reason": "consented again"},
                          headers=compliance)
    assert removed.status_code == 200
    assert client.post("/v1/dnc/internal/remove", json={"phone": "2125550123", "reason": "x"},
                       headers=compliance).status_code == 404
    assert client.post("/v1/dnc/internal", json={"phone": "555", "reason": "x"}, headers=compliance).status_code == 422
    assert actors_of("dnc.internal.add") == ["compliance"] and actors_of("dnc.internal.remove") == ["compliance"]


def test_a_state_list_upload_loads_and_a_bad_line_refuses_it(client, as_role):
    body = b"phone\n3055550100\n"
    response = client.post("/v1/dnc/state/FL", files={"file": ("fl.csv", body, "text/csv")},
                           data={"version": "2026-07"}, headers=as_role("compliance"))
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["state"], report["entries"], report["rejected"], report["file"]) == ("FL", 1, 0, "fl.csv")
    assert client.get("/v1/dnc/numbers/3055550100", headers=as_role("compliance")).json()["state"] == ["FL"]
    refused = client.post("/v1/dnc/state/FL", files={"file": ("fl.csv", b"phone\n3055550101\nnot a number\n",
                                                               "text/csv")}, headers=as_role("compliance"))
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert detail["rejected_samples"] == [{"line": 3, "reason": "letters_in_number", "text": "not a number"}]
    assert "fl.csv" in detail["error"] and "/tmp" not in refused.text
    assert client.get("/v1/dnc/numbers/3055550101", headers=as_role("compliance")).json()["state"] == []
    binary = client.post("/v1/dnc/state/FL", files={"file": ("fl.csv", b"\xff\xfe\x00", "text/csv")},
                         headers=as_role("compliance"))
    assert binary.status_code == 422 and "fl.csv" in binary.json()["detail"] and "/tmp" not in binary.text


def test_national_uploads_add_up_per_area_code_and_refuse_bad_lines(client, as_role):
    compliance = as_role("compliance")
    for name, body in (("212.txt", b"2125550100\n"), ("201.txt", b"201-555-0100\n")):
        loaded = client.post("/v1/dnc/national", files=[("files", (name, body, "text/plain"))], headers=compliance)
        assert loaded.status_code == 200, loaded.text
    assert loaded.json()["area_codes_loaded"] == ["201"] and loaded.json()["area_codes_kept"] == ["212"]
    national = client.get("/v1/dnc/status", headers=compliance).json()[0]
    assert national["area_codes_held"] == ["201", "212"]
    assert client.get("/v1/dnc/numbers/2125550100", headers=compliance).json()["national"]["listed"] is True
    assert client.get("/v1/dnc/numbers/6465550100", headers=compliance).json()["national"]["synced_at"] is None
    bad = client.post("/v1/dnc/national/changes", files=[("files", ("c.txt", b"2125550100,D\n2125550101,Z\n",
                                                                      "text/plain"))], headers=compliance)
    assert bad.status_code == 422
    [sample] = bad.json()["detail"]["malformed_samples"]
    assert (sample["file"], sample["line"], sample["text"]) == ("c.txt", 2, "2125550101,Z") and "/tmp" not in bad.text
    assert client.get("/v1/dnc/numbers/2125550100", headers=compliance).json()["national"]["listed"] is True
    future = client.post("/v1/dnc/national", files=[("files", ("212.txt", b"2125550100\n", "text/plain"))],
                         data={"synced_at": "2199-01-01T00:00:00Z"}, headers=compliance)
    assert future.status_code == 422 and "in the future" in future.json()["detail"]
    after = client.get("/v1/dnc/status", headers=compliance).json()[0]
    assert {**after, "age_days": None} == {**national, "age_days": None}       # ages move with the clock


def test_consent_import_upload_loads_good_rows_and_reports_bad_ones(client, as_role):
    rows = [{"type": "consent", "phone": "2125550123", "kind": "written", "channels": ["voice"],
             "purposes": ["telemarketing"], "seller": "Acme", "granted_at": "2026-01-01T00:00:00Z",
             "evidence": {"certificate_id": "C-1"}},
            {"type": "consent", "phone": "555", "kind": "written"}]
    data = "\n".join(json.dumps(row) for row in rows).encode()
    response = client.post("/v1/consent/import", files={"file": ("ledger.jsonl", data, "application/json")},
                           headers=as_role("compliance"))
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["rejected"] == 1 and sum(summary["loaded"].values()) == 1
    assert actors_of("consent.granted") == ["compliance"]


def test_a_manager_who_imports_another_campaigns_phone_reads_only_their_own_campaigns_conversations(
        client, as_role, two_managers_campaigns):
    from outbound.memory_tables import ConversationFact, ConversationTurn
    from outbound.models import Attempt, Campaign, Contact

    other = two_managers_campaigns["other"]
    with Session(get_engine()) as session:
        mine = session.get(Campaign, two_managers_campaigns["mine"])
        attempt = session.scalars(select(Attempt).where(Attempt.campaign_id == mine.id)).one()
        session.add(ConversationTurn(attempt_id=attempt.id, contact_id=attempt.contact_id, phone="+12125550123",
                                     turn_no=1, heard="my account number is 1234", said="thanks", at=T0))
        session.add(ConversationFact(contact_id=attempt.contact_id, phone="+12125550123", campaign_id=mine.id,
                                     attempt_id=attempt.id, kind="not_interested", value="yes", at=T0))
        # The other manager puts the same phone into their own campaign.
        theirs = session.get(Campaign, two_managers_campaigns["theirs"])
        session.add(Contact(campaign_id=theirs.id, e164="+12125550123", phone_raw="2125550123", created_at=T0))
        session.commit()
    seen = client.get("/v1/contacts/2125550123/conversation", headers=other)
    assert seen.status_code == 200
    assert (seen.json()["turns"], seen.json()["facts"]) == ([], [])
    assert "1234" not in seen.text
    owner = client.get("/v1/contacts/2125550123/conversation", headers=as_role("manager")).json()
    assert [t["heard"] for t in owner["turns"]] == ["my account number is 1234"]
    assert [f["kind"] for f in owner["facts"]] == ["not_interested"]
    everything = client.get("/v1/contacts/2125550123/conversation", headers=as_role("compliance")).json()
    assert len(everything["turns"]) == 1 and len(everything["facts"]) == 1
