"""Agents through the CLI and the API; transfers seen and acted on by the agent they are offered to."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import Session

from api import database
from api.app import create_app
from api.routes import transfers as transfer_routes
from outbound import agents, transfer_events, transfers
from outbound.agent_tables import Agent, Transfer
from outbound.cli import app as cli_app
from outbound.db import ensure_schema, get_engine
from outbound.models import AuditEvent
from webhook_support import T0, add_attempt, add_campaign

PUBLIC = "https://calls.example.com"


def cli(runner, *args):
    result = runner.invoke(cli_app, list(args))
    return result.exit_code, result.stdout


# --- the domain --------------------------------------------------------------------------------

@pytest.mark.parametrize("reach,message", [
    ("555-0100", "neither an E.164 number"),
    ("+1212555010", "neither an E.164 number"),
    ("client:", "not a Twilio Client identity"),
    ("client:a b", "not a Twilio Client identity"),
])
def test_reach_must_be_a_number_or_a_client_identity(reach, message):
    with pytest.raises(agents.AgentError, match=message):
        agents.validate_reach(reach)


def test_two_transfers_never_reserve_the_same_agent(session):
    agents.add_agent(session, "ana", "client:ana", status="available", actor="test", at=T0)
    assert agents.reserve_free_agent(session, at=T0).name == "ana"
    assert agents.reserve_free_agent(session, at=T0) is None
    assert agents.find_agent(session, "ana").status == "busy"


def test_the_agent_free_longest_is_offered_first(session):
    agents.add_agent(session, "late", "client:late", status="available", actor="test", at=T0 + timedelta(minutes=5))
    agents.add_agent(session, "early", "client:early", status="available", actor="test", at=T0)
    assert agents.reserve_free_agent(session, at=T0).name == "early"


# --- CLI ---------------------------------------------------------------------------------------

def test_cli_add_list_status_remove(outbound_env, cli_runner):
    code, out = cli(cli_runner, "agent", "add", "Ana", "--reach", "+1 212 555 0150", "--status", "available", "--json")
    assert code == 0 and json.loads(out)["reach"] == "+12125550150"
    code, out = cli(cli_runner, "agent", "add", "Bo", "--reach", "client:bo")
    assert code == 0 and "added agent Bo" in out
    assert cli(cli_runner, "agent", "add", "Ana", "--reach", "client:x")[0] == 2              # name taken
    assert cli(cli_runner, "agent", "add", "Cy", "--reach", "12345")[0] == 2                  # bad reach
    assert cli(cli_runner, "agent", "status", "Bo", "lunch")[0] == 2
    assert cli(cli_runner, "agent", "status", "Nobody", "available")[0] == 1
    code, out = cli(cli_runner, "agent", "status", "Bo", "wrap_up", "--json")
    assert code == 0 and json.loads(out)["status"] == "wrap_up"
    listed = json.loads(cli(cli_runner, "agent", "list", "--json")[1])
    assert [(a["name"], a["status"]) for a in listed] == [("Ana", "available"), ("Bo", "wrap_up")]
    assert cli(cli_runner, "agent", "remove", "Bo")[0] == 0
    assert [a["name"] for a in json.loads(cli(cli_runner, "agent", "list", "--json")[1])] == ["Ana"]
    with Session(get_engine()) as session:
        events = [(e.actor, e.action) for e in session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()]
    assert [action for _, action in events] == ["agent.added", "agent.added", "agent.status", "agent.removed"]
    assert all(actor.startswith("cli") for actor, _ in events)


def test_cli_transfer_policy_and_abandonment(outbound_env, cli_runner):
    engine = get_engine()
    ensure_schema(engine)
    with Session(engine) as session:
        add_campaign(session, "Live Calls")
        session.commit()
    code, out = cli(cli_runner, "agent", "policy", "Live Calls", "--wait", "30s", "--callback-after", "2h", "--json")
    assert code == 0 and json.loads(out) == {"campaign": "Live Calls", "wait_seconds": 30,
                                             "callback_delay_seconds": 7200}
    assert cli(cli_runner, "agent", "policy", "Live Calls", "--wait", "2s")[0] == 2
    code, out = cli(cli_runner, "campaign", "abandonment", "Live Calls", "--json")
    rate = json.loads(out)
    assert code == 0 and rate["agent_campaign"] and rate["budget"] == 0.03 and rate["live_answers"] == 0
    assert cli(cli_runner, "campaign", "abandonment", "nope")[0] == 1
    assert cli(cli_runner, "campaign", "abandonment", "Live Calls", "--at", "2026-07-15T16:00")[0] == 2  # no zone
    code, out = cli(cli_runner, "campaign", "abandonment", "Live Calls", "--at", "2026-07-15T16:00:00Z")
    assert code == 0 and "0 abandoned of 0 live answers" in out


# --- API ---------------------------------------------------------------------------------------

@pytest.fixture
def client(engine, api_users, monkeypatch):
    app = create_app()
    api_users.install(app)
    monkeypatch.setattr("outbound.db.get_engine", lambda url=None: engine)
    monkeypatch.setattr("api.routes.transfers.get_engine", lambda url=None: engine)    # the event stream
    app.dependency_overrides[transfer_routes.get_public_url] = lambda: PUBLIC
    app.dependency_overrides[database.get_api_now] = lambda: T0 + timedelta(seconds=5)
    return TestClient(app)


def test_api_manager_manages_agents_an_agent_sets_only_their_own_status(client, api_users):
    manager, agent = api_users.headers("manager"), api_users.headers("agent")
    created = client.post("/v1/agents", json={"name": "agent", "reach": "client:agent"}, headers=manager)
    assert created.status_code == 201
    other = client.post("/v1/agents", json={"name": "other", "reach": "+12125550150"}, headers=manager).json()
    assert client.post("/v1/agents", json={"name": "x", "reach": "nope"}, headers=manager).status_code == 422
    assert client.post("/v1/agents", json={"name": "other", "reach": "client:o"}, headers=manager).status_code == 409
    assert client.post("/v1/agents", json={"name": "y", "reach": "client:y"}, headers=agent).status_code == 403
    own = client.post(f"/v1/agents/{created.json()['id']}/status", json={"status": "available"}, headers=agent)
    assert own.status_code == 200 and own.json()["status"] == "available"
    assert client.post(f"/v1/agents/{other['id']}/status", json={"status": "available"},
                       headers=agent).status_code == 404
    assert [a["name"] for a in client.get("/v1/agents", headers=agent).json()] == ["agent", "other"]
    assert client.delete(f"/v1/agents/{other['id']}", headers=manager).json() == {"removed": other["id"]}


def test_api_agent_accepts_the_offer_sees_the_card_and_gives_a_disposition(client, engine, api_users):
    with Session(engine) as session:
        campaign = add_campaign(session)
        attempt = add_attempt(session, campaign, "+12125550123", carrier_status="in-progress")
        agents.add_agent(session, "agent", "client:agent", status="available", actor="test", at=T0)
        since = transfer_events.broadcaster.since(0)[-1].seq if transfer_events.broadcaster.since(0) else 0
        transfers.begin_transfer(session, attempt_id=attempt.id, at=T0, public_url=PUBLIC)
        session.commit()
        transfer_id = session.execute(select(Transfer.id)).scalar_one()
    headers = api_users.headers("agent")
    offers = client.get(f"/v1/transfers/events?since={since}", headers=headers).json()
    assert [(e["kind"], e["transfer_id"]) for e in offers] == [("offer", transfer_id)]
    card = client.get(f"/v1/transfers/{transfer_id}/card", headers=headers).json()
    assert card["caller"]["phone"] == "+12125550123" and "consent" in card and "prior_attempts" in card
    accepted = client.post(f"/v1/transfers/{transfer_id}/accept", headers=headers).json()
    assert accepted["conference"] == f"transfer-{transfer_id}"
    # Not joined yet: there is no conversation to give a disposition to.
    early = client.post(f"/v1/transfers/{transfer_id}/disposition", json={"disposition": "sale"}, headers=headers)
    assert early.status_code == 422 and "never reached an agent" in early.json()["detail"]
    with Session(engine) as session:
        transfers.handle_conference_event(session, transfer_id, {"StatusCallbackEvent": "participant-join",
                                                                 "CallSid": "CA" + "a" * 32}, at=T0 + timedelta(seconds=1))
        transfers.handle_conference_event(session, transfer_id, {"StatusCallbackEvent": "conference-end"},
                                          at=T0 + timedelta(minutes=3))
        session.commit()
        assert session.execute(select(Agent.status)).scalar_one() == "wrap_up"
    done = client.post(f"/v1/transfers/{transfer_id}/disposition", json={"disposition": "sale", "note": "2 panels"},
                       headers=headers)
    assert done.status_code == 200 and done.json()["disposition"] == "sale" and done.json()["result"] == "transferred"
    with Session(engine) as session:
        assert session.execute(select(Agent.status)).scalar_one() == "available"
        actors = {e.action: e.actor for e in session.execute(select(AuditEvent)).scalars()}
    assert actors["transfer.accepted"] == "agent" and actors["transfer.disposition"] == "agent"


def test_api_another_agents_transfer_is_not_found(client, engine, api_users):
    with Session(engine) as session:
        campaign = add_campaign(session)
        campaign.owner_id = api_users.ids["manager"]
        attempt = add_attempt(session, campaign, "+12125550123", carrier_status="in-progress")
        agents.add_agent(session, "agent", "client:agent", status="offline", actor="test", at=T0)
        agents.add_agent(session, "someone", "client:someone", status="available", actor="test", at=T0)
        transfers.begin_transfer(session, attempt_id=attempt.id, at=T0, public_url=PUBLIC)
        session.commit()
        transfer_id = session.execute(select(Transfer.id)).scalar_one()
    assert client.get(f"/v1/transfers/{transfer_id}/card", headers=api_users.headers("agent")).status_code == 404
    assert client.post(f"/v1/transfers/{transfer_id}/accept", headers=api_users.headers("agent")).status_code == 404
    assert client.get(f"/v1/transfers/{transfer_id}/card", headers=api_users.headers("manager")).status_code == 200
    assert client.get("/v1/transfers", headers=api_users.headers("agent")).json() == []


def test_api_declining_passes_the_caller_to_the_next_agent(client, engine, api_users):
    with Session(engine) as session:
        attempt = add_attempt(session, add_campaign(session), "+12125550123", carrier_status="in-progress")
        agents.add_agent(session, "agent", "client:agent", status="available", actor="test", at=T0)
        agents.add_agent(session, "next", "client:next", status="available", actor="test", at=T0 + timedelta(seconds=1))
        transfers.begin_transfer(session, attempt_id=attempt.id, at=T0, public_url=PUBLIC)
        session.commit()
        transfer_id = session.execute(select(Transfer.id)).scalar_one()
    declined = client.post(f"/v1/transfers/{transfer_id}/decline", headers=api_users.headers("agent"))
    assert declined.status_code == 200 and declined.json()["action"] == "next_agent"
    with Session(engine) as session:
        transfer = session.get(Transfer, transfer_id)
        assert session.get(Agent, transfer.agent_id).name == "next"
        assert agents.find_agent(session, "agent").status == "available"


def test_api_abandonment_rate_and_transfer_policy(client, engine, api_users):
    with Session(engine) as session:
        campaign = add_campaign(session)
        campaign.owner_id = api_users.ids["manager"]
        session.commit()
        campaign_id = campaign.id
    manager = api_users.headers("manager")
    rate = client.get(f"/v1/campaigns/{campaign_id}/abandonment", headers=api_users.headers("compliance"))
    assert rate.status_code == 200 and rate.json()["budget"] == 0.03 and rate.json()["spent"] is False
    assert client.get(f"/v1/campaigns/{campaign_id}/abandonment", headers=api_users.headers("agent")).status_code == 403
    put = client.put(f"/v1/campaigns/{campaign_id}/transfer-policy", json={"wait_seconds": 20}, headers=manager)
    assert put.status_code == 200 and put.json()["wait_seconds"] == 20
    bad = client.put(f"/v1/campaigns/{campaign_id}/transfer-policy", json={"wait_seconds": 1}, headers=manager)
    assert bad.status_code == 422 and "wait_seconds must be between 5 and 600" in bad.json()["detail"]
    _, stranger = api_users.add("manager2", "manager")
    assert client.put(f"/v1/campaigns/{campaign_id}/transfer-policy", json={"wait_seconds": 30},
                      headers=stranger).status_code == 404
    compliance_view = client.get(f"/v1/campaigns/{campaign_id}/transfer-policy", headers=api_users.headers("compliance"))
    assert compliance_view.json() == {"campaign_id": campaign_id, "wait_seconds": 20, "callback_delay_seconds": 3600}


def test_cli_transfer_list_and_show_with_the_card(outbound_env, cli_runner):
    engine = get_engine()
    ensure_schema(engine)
    with Session(engine) as session:
        attempt = add_attempt(session, add_campaign(session), "+12125550123", carrier_status="in-progress")
        transfers.begin_transfer(session, attempt_id=attempt.id, at=T0, public_url=PUBLIC)   # nobody: no_agent
        session.commit()
    code, out = cli(cli_runner, "transfer", "list", "--json")
    assert code == 0 and [(t["state"], t["result"]) for t in json.loads(out)] == [("ended", "no_agent")]
    code, out = cli(cli_runner, "transfer", "show", str(json.loads(out)[0]["id"]), "--json")
    shown = json.loads(out)
    assert code == 0 and shown["card"]["caller"]["phone"] == "+12125550123" and shown["callback_attempt_id"]
    assert cli(cli_runner, "transfer", "show", "999")[0] == 1


def _transfer_in_campaign(session, name: str, owner_id: int, phone: str) -> int:
    campaign = add_campaign(session, name)
    campaign.owner_id = owner_id
    attempt = add_attempt(session, campaign, phone, carrier_status="in-progress")
    transfers.begin_transfer(session, attempt_id=attempt.id, at=T0, public_url=PUBLIC)
    session.commit()
    return session.execute(select(Transfer.id).where(Transfer.attempt_id == attempt.id)).scalar_one()


@pytest.fixture
def two_managers_transfers(engine, api_users):
    """Transfers in the campaigns of two managers: (other manager's headers, own id, other id)."""
    other_id, other_headers = api_users.add("second-manager", "manager")
    with Session(engine) as session:
        agents.add_agent(session, "agent", "client:agent", status="available", actor="test", at=T0)
        agents.add_agent(session, "agent2", "client:agent2", status="available", actor="test", at=T0)
        mine = _transfer_in_campaign(session, "Mine", api_users.ids["manager"], "+12125550123")
        theirs = _transfer_in_campaign(session, "Theirs", other_id, "+12125550124")
    return other_headers, mine, theirs


def test_api_a_manager_sees_and_acts_on_the_transfers_of_their_own_campaigns_only(client, api_users,
                                                                                 two_managers_transfers):
    _other, mine, theirs = two_managers_transfers
    manager = api_users.headers("manager")
    assert [t["id"] for t in client.get("/v1/transfers", headers=manager).json()] == [mine]
    assert client.get(f"/v1/transfers/{theirs}", headers=manager).status_code == 404
    assert client.get(f"/v1/transfers/{theirs}/card", headers=manager).status_code == 404
    assert client.post(f"/v1/transfers/{theirs}/disposition", json={"disposition": "sale"},
                       headers=manager).status_code == 404
    assert client.post(f"/v1/transfers/{theirs}/decline", headers=manager).status_code == 404
    assert client.get(f"/v1/transfers/{mine}/card", headers=manager).status_code == 200
    # Compliance reads every transfer.
    assert sorted(t["id"] for t in client.get("/v1/transfers", headers=api_users.headers("compliance")).json()) == \
        sorted([mine, theirs])
    assert client.get(f"/v1/transfers/{theirs}/card", headers=api_users.headers("compliance")).status_code == 200


def test_api_a_managers_event_feed_holds_only_their_campaigns_transfers(client, api_users, two_managers_transfers):
    _other, mine, theirs = two_managers_transfers
    events = client.get("/v1/transfers/events?since=0", headers=api_users.headers("manager")).json()
    assert {e["transfer_id"] for e in events} == {mine}
    everything = client.get("/v1/transfers/events?since=0", headers=api_users.headers("compliance")).json()
    assert {e["transfer_id"] for e in everything} >= {mine, theirs}


def test_api_a_managers_event_stream_skips_other_managers_transfers(client, api_users, two_managers_transfers):
    import asyncio

    from outbound.users import CurrentUser

    _other, mine, theirs = two_managers_transfers
    broadcaster = transfer_events.TransferBroadcaster()
    manager = CurrentUser(id=api_users.ids["manager"], name="manager", role="manager")

    async def first_event() -> str:
        response = await transfer_routes.get_stream(manager, broadcaster)
        broadcaster.publish("offer", theirs)
        broadcaster.publish("offer", mine)
        chunk = await response.body_iterator.__anext__()
        await response.body_iterator.aclose()
        return chunk

    chunk = asyncio.run(first_event())
    assert f'"transfer_id": {mine}' in chunk
