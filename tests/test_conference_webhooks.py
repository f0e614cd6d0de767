"""The transfer webhooks, signed as Twilio signs them: the TwiML each answers, and late or
unknown conferences answered with a defined no-op (never a 500, never silence)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import Session
from twilio.request_validator import RequestValidator

from api.app import create_app
from api.routes import webhooks
from consent.tables import Revocation
from outbound import agents, transfers
from outbound.agent_tables import Agent, LiveAnswer, Transfer
from outbound.models import Attempt
from telephony.adapter import CarrierCall
from webhook_support import PUBLIC_URL, T0, add_attempt, add_campaign, configure_webhooks
from webhook_support import WEBHOOK_TOKEN as TOKEN

PHONE = "+12125550123"
AGENT_PHONE = "+12125550150"


@dataclass
class RecordingCarrier:
    name: str = "recording"
    placed: list = field(default_factory=list)
    redirected: list = field(default_factory=list)
    hung_up: list = field(default_factory=list)

    def place_call(self, request):
        sid = f"CA{len(self.placed) + 1:032x}"
        self.placed.append((sid, request))
        return CarrierCall(sid=sid, status="queued")

    def move_to_conference(self, sid, conference, twiml_url):
        self.redirected.append((sid, twiml_url))
        return CarrierCall(sid=sid, status="in-progress")

    def hang_up(self, sid):
        self.hung_up.append(sid)
        return CarrierCall(sid=sid, status="completed")


@pytest.fixture
def engine(outbound_env_db, monkeypatch):
    return configure_webhooks(monkeypatch)


@pytest.fixture
def carrier(monkeypatch):
    carrier = RecordingCarrier()
    monkeypatch.setattr(transfers, "_adapter", carrier)
    return carrier


@pytest.fixture
def client(engine, carrier):
    app = create_app()
    app.dependency_overrides[webhooks.get_now] = lambda: T0 + timedelta(seconds=1)
    return TestClient(app, base_url="http://10.0.0.5:8000")


@pytest.fixture
def transfer(engine, carrier) -> Transfer:
    with Session(engine) as session:
        campaign = add_campaign(session)
        attempt = add_attempt(session, campaign, PHONE, carrier_status="in-progress")
        agents.add_agent(session, "ana", AGENT_PHONE, status="available", actor="test", at=T0)
        transfers.begin_transfer(session, attempt_id=attempt.id, at=T0, public_url=PUBLIC_URL)
        session.commit()
        return session.execute(select(Transfer)).scalar_one()


def post(client, path: str, params: dict, *, token: str = TOKEN):
    url = f"{PUBLIC_URL}{path}"
    signature = RequestValidator(token).compute_signature(url, params)
    return client.post(path, content=urlencode(params), headers={
        "X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"})


def base(transfer: Transfer, call_sid: str, **extra) -> dict:
    return {"AccountSid": "AC" + "0" * 32, "ConferenceSid": "CF" + "1" * 32,
            "FriendlyName": transfer.conference, "CallSid": call_sid, **extra}


def test_agent_is_called_with_the_transfer_urls(transfer, carrier):
    (sid, request), = carrier.placed
    assert request.to == AGENT_PHONE
    assert request.twiml_url == f"{PUBLIC_URL}/v1/conference/{transfer.id}/agent"
    assert request.status_callback == f"{PUBLIC_URL}/v1/conference/{transfer.id}/agent-status"
    assert transfer.agent_sid == sid and transfer.state == "ringing_agent"


def test_agent_twiml_speaks_the_summary_then_joins(client, transfer):
    response = post(client, f"/v1/conference/{transfer.id}/agent", {"CallSid": transfer.agent_sid})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    body = response.text
    assert body.index("<Say>Transfer from campaign Acme Solar") < body.index("<Conference")
    assert 'startConferenceOnEnter="true"' in body and f">{transfer.conference}</Conference>" in body


def test_wait_identifies_once_then_holds(engine, client, transfer):
    first = post(client, f"/v1/conference/{transfer.id}/wait", {"CallSid": transfer.caller_sid}).text
    second = post(client, f"/v1/conference/{transfer.id}/wait", {"CallSid": transfer.caller_sid}).text
    assert first.index("This call is from Acme Solar") < first.index("<Play>")
    assert "press 9" in first and "2 1 2 5 5 5 0 1 0 0" in first           # opt-out and a number to call
    assert "This call is from" not in second and "<Play>" in second
    with Session(engine) as session:                                   # a live answer: on record as identified
        assert session.execute(select(LiveAnswer.identified)).scalar_one() is True


def test_wait_past_the_hold_time_redirects_to_the_callback_offer(engine, client, transfer, carrier):
    client.app.dependency_overrides[webhooks.get_now] = lambda: T0 + timedelta(seconds=46)
    body = post(client, f"/v1/conference/{transfer.id}/wait", {"CallSid": transfer.caller_sid}).text
    assert "<Pause" in body                                          # not silence: the redirect follows
    assert carrier.redirected == [(transfer.caller_sid, f"{PUBLIC_URL}/v1/conference/{transfer.id}/no-agent")]
    assert carrier.hung_up == [transfer.agent_sid]
    offer = post(client, f"/v1/conference/{transfer.id}/no-agent", {"CallSid": transfer.caller_sid}).text
    assert "no representative is free" in offer and f"/v1/conference/{transfer.id}/callback-reply" in offer
    with Session(engine) as session:
        stored = session.get(Transfer, transfer.id)
        assert stored.result == "no_agent" and session.get(Agent, stored.agent_id).status == "available"


def test_agent_join_then_caller_leave_is_transferred(engine, client, transfer):
    joined = post(client, f"/v1/conference/{transfer.id}/events",
                  base(transfer, transfer.agent_sid, StatusCallbackEvent="participant-join")).json()
    assert joined["action"] == "agent_joined" and joined["result"] == "agent_joined"
    left = post(client, f"/v1/conference/{transfer.id}/events",
                base(transfer, transfer.caller_sid, StatusCallbackEvent="participant-leave")).json()
    assert left["result"] == "transferred"
    with Session(engine) as session:
        assert session.get(Agent, session.get(Transfer, transfer.id).agent_id).status == "wrap_up"


def test_events_for_an_ended_conference_are_a_defined_no_op(engine, client, transfer):
    post(client, f"/v1/conference/{transfer.id}/events",
         base(transfer, transfer.caller_sid, StatusCallbackEvent="participant-leave"))
    late = post(client, f"/v1/conference/{transfer.id}/events",
                base(transfer, transfer.agent_sid, StatusCallbackEvent="participant-join"))
    assert late.status_code == 200
    assert late.json()["action"] == "ignored" and "already ended" in late.json()["detail"]
    with Session(engine) as session:
        assert session.get(Transfer, transfer.id).result == "caller_hung_up_on_hold"
    # TwiML asked for an ended transfer: a goodbye and a hang-up, never an empty answer.
    for leaf in ("agent", "wait", "no-agent", "caller-done"):
        body = post(client, f"/v1/conference/{transfer.id}/{leaf}", {"CallSid": transfer.caller_sid}).text
        assert "<Say>" in body and ("<Hangup" in body or "<Pause" in body), leaf


def test_unknown_conference_is_answered_too(client):
    events = post(client, "/v1/conference/4242/events", {"StatusCallbackEvent": "conference-end"})
    assert events.status_code == 200 and events.json()["action"] == "ignored"
    twiml = post(client, "/v1/conference/4242/wait", {"CallSid": "CA" + "2" * 32})
    assert twiml.status_code == 200 and "<Hangup" in twiml.text


def test_agent_leg_not_answered_gives_the_caller_the_callback_offer(engine, client, transfer, carrier):
    result = post(client, f"/v1/conference/{transfer.id}/agent-status",
                  {"CallSid": transfer.agent_sid, "CallStatus": "no-answer"}).json()
    assert result["action"] == "no_agent"                             # the only agent did not answer
    assert carrier.redirected[-1][1].endswith(f"/v1/conference/{transfer.id}/no-agent")


def test_opt_out_at_the_callback_offer_cancels_it_and_revokes(engine, client, transfer):
    post(client, f"/v1/conference/{transfer.id}/agent-status", {"CallSid": transfer.agent_sid, "CallStatus": "busy"})
    body = post(client, f"/v1/conference/{transfer.id}/callback-reply",
                {"CallSid": transfer.caller_sid, "Digits": "9"}).text
    assert "You will not receive any more calls" in body and "<Hangup" in body
    with Session(engine) as session:
        stored = session.get(Transfer, transfer.id)
        assert session.get(Attempt, stored.callback_attempt_id).status == "cancelled"
        assert session.execute(select(Revocation).where(Revocation.phone == PHONE)).scalars().first() is not None


def test_unsigned_or_wrongly_signed_requests_are_refused(client, transfer):
    assert client.post(f"/v1/conference/{transfer.id}/events", data={"StatusCallbackEvent": "x"}).status_code == 403
    assert post(client, f"/v1/conference/{transfer.id}/wait", {"CallSid": "x"}, token="f" * 32).status_code == 403


def test_console_agent_connects_through_the_twiml_app_url(client, transfer):
    body = post(client, "/v1/conference/console", {"CallSid": "CA" + "c" * 32, "transfer": str(transfer.id)}).text
    assert f">{transfer.conference}</Conference>" in body
    nameless = post(client, "/v1/conference/console", {"CallSid": "CA" + "c" * 32}).text
    assert "<Say>" in nameless and "<Hangup" in nameless
