"""The voice webhooks with signed requests: the TwiML a call hears, turn by turn."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from api.app import create_app
from api.routes import webhooks
from consent.tables import Revocation
from outbound.memory_tables import ConversationFact, ConversationTurn
from outbound.models import Attempt, AuditEvent, Campaign, Contact
from webhook_support import PUBLIC_URL, T0, add_attempt, add_campaign, count
from webhook_support import configured, db  # noqa: F401 (fixtures)
from webhook_support import WEBHOOK_TOKEN as TOKEN

PHONE = "+13105550123"
CONVERSATION = {"script": "solar_qualify", "record_calls": True, "machine_policy": "leave_voicemail",
                "seller_name": "Sunrise Solar", "callback_number": "+18005550100"}


def make_attempt(db, conversation=None, states="CA", voice="artificial"):
    campaign = add_campaign(db, settings={"conversation": conversation or CONVERSATION})
    campaign.voice, campaign.purpose = voice, "telemarketing"
    db.add(campaign)
    attempt = add_attempt(db, campaign, PHONE, carrier_status="in-progress")
    contact = db.get(Contact, attempt.contact_id)
    contact.states, contact.timezones, contact.first_name = states, "America/Los_Angeles", "Ann"
    db.add(contact)
    db.commit()
    return attempt


@pytest.fixture
def attempt(db):
    return make_attempt(db)


@pytest.fixture
def client(configured):
    app = create_app()
    app.dependency_overrides[webhooks.get_reply_adapter] = lambda: None
    app.dependency_overrides[webhooks.get_now] = lambda: T0          # 09:00 in Los Angeles
    return TestClient(app, base_url="http://10.0.0.5:8000")


def post(client, path, params, *, query="", header=True):
    url = f"{PUBLIC_URL}{path}" + (f"?{query}" if query else "")
    headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, params)} if header else {}
    return client.post(path + (f"?{query}" if query else ""), content=urlencode(params),
                       headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})


def answer(client, attempt):
    response = post(client, f"/v1/twilio/voice/{attempt.id}", {"CallSid": attempt.carrier_id, "CallStatus": "in-progress"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    return response.text


def action_of(twiml: str) -> tuple[str, str]:
    url = re.search(r'action="([^"]+)"', twiml).group(1).replace("&amp;", "&")
    parts = urlsplit(url)
    assert url.startswith(PUBLIC_URL)
    return parts.path, parts.query


def reply(client, attempt, twiml, **said):
    path, query = action_of(twiml)
    return post(client, path, {"CallSid": attempt.carrier_id, **said}, query=query)


def says(twiml: str) -> list[str]:
    return re.findall(r"<Say>([^<]*)</Say>", twiml)


def test_the_answer_opens_with_the_recording_notice_then_disclosures_inside_a_gather(client, attempt):
    twiml = answer(client, attempt)
    spoken = says(twiml)
    assert spoken[:4] == ["This call is recorded.", "You are hearing an artificial, computer-generated voice.",
                          "This is a call from Sunrise Solar.",
                          "To stop calls from Sunrise Solar, press 9 or say stop at any time."]
    assert "8 0 0, 5 5 5, 0 1 0 0" in spoken[4] and spoken[-1].startswith("Do you own your home?")
    assert '<Gather action=' in twiml and 'input="dtmf speech"' in twiml and 'actionOnEmptyResult="true"' in twiml
    path, query = action_of(twiml)
    assert path == f"/v1/twilio/gather/{attempt.id}" and parse_qs(query) == {
        "turn": ["1"], "node": ["homeowner"], "tries": ["0"]}


def test_a_one_party_state_hears_no_recording_notice(client, db):
    attempt = make_attempt(db, states="NY")
    assert says(answer(client, attempt))[0] == "You are hearing an artificial, computer-generated voice."


@pytest.mark.parametrize("said,via", [({"Digits": "9"}, "keypress"),
                                      ({"SpeechResult": "Stop calling me", "Confidence": "0.91"}, "spoken")])
def test_an_opt_out_mid_call_is_stored_then_the_call_ends_politely(client, db, attempt, said, via):
    response = reply(client, attempt, answer(client, attempt), **said)
    assert response.status_code == 200, response.text
    assert says(response.text) == ["You will not get more calls from Sunrise Solar. Thank you, goodbye."]
    assert "<Hangup" in response.text and "<Gather" not in response.text
    revocation = db.execute(select(Revocation).where(Revocation.phone == PHONE)).scalars().one()
    assert revocation.via == via and set(revocation.channels.split()) == {"voice", "sms"}
    actions = [e.action for e in db.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()]
    assert actions.index("consent.revoked") < actions.index("conversation.opt_out")


def test_unexpected_speech_is_reprompted_once_then_ends_politely(client, db, attempt):
    first = reply(client, attempt, answer(client, attempt), SpeechResult="purple elephants")
    assert says(first.text)[0] == "Sorry, I did not understand." and "tries=1" in first.text
    second = reply(client, attempt, first.text, SpeechResult="purple elephants")
    assert "<Hangup" in second.text and "Sorry we could not talk today" in says(second.text)[0]
    redelivered = reply(client, attempt, first.text, SpeechResult="purple elephants")
    assert redelivered.text == second.text


def test_a_callback_request_moves_the_next_due_time(client, db, attempt):
    response = reply(client, attempt, answer(client, attempt), SpeechResult="Call me back after 5 pm")
    assert says(response.text) == ["Of course. We will call you back after 5 PM. Goodbye."]
    db.expire_all()
    nxt = db.execute(select(Attempt).where(Attempt.contact_id == attempt.contact_id, Attempt.attempt_no == 2)).scalar_one()
    # 17:00 in Los Angeles on the day of T0 (2026-07-15, PDT) is 00:00 UTC the next day.
    assert nxt.status == "pending" and nxt.due_at.isoformat() == "2026-07-16T00:00:00+00:00"


def test_a_redelivered_reply_answers_the_same_and_stores_once(client, db, attempt):
    twiml = answer(client, attempt)
    assert answer(client, attempt) == twiml
    first = reply(client, attempt, twiml, Digits="2")
    again = reply(client, attempt, twiml, Digits="2")
    assert first.text == again.text and "Thank you for your time" in first.text
    assert count(db, ConversationTurn) == 2 and count(db, ConversationFact) == 1


def test_unsigned_unknown_or_foreign_requests_are_refused(client, db, attempt):
    params = {"CallSid": attempt.carrier_id}
    assert post(client, f"/v1/twilio/voice/{attempt.id}", params, header=False).status_code == 403
    assert post(client, "/v1/twilio/voice/999999", params).status_code == 404
    twiml = answer(client, attempt)
    path, query = action_of(twiml)
    assert post(client, path, {"CallSid": "CA" + "0" * 32, "Digits": "1"}, query=query).status_code == 404
    assert post(client, path, {"CallSid": attempt.carrier_id, "Digits": "9"}, query=query, header=False).status_code == 403
    assert count(db, Revocation) == 0


def test_the_voicemail_url_leaves_a_compliant_message(client, db, attempt):
    response = post(client, f"/v1/twilio/voicemail/{attempt.id}", {"CallSid": attempt.carrier_id})
    message = " ".join(says(response.text))
    assert "artificial" in message and "Sunrise Solar" in message and "8 0 0, 5 5 5, 0 1 0 0" in message
    assert "press 9" in message and "<Hangup" in response.text
    assert [f.kind for f in db.execute(select(ConversationFact)).scalars()] == ["voicemail_left"]


def test_a_script_broken_after_the_campaign_was_created_ends_the_call_politely(client, db, tmp_path):
    script = tmp_path / "mine.yaml"
    script.write_text("name: mine\nstart: a\nnodes:\n  a: {type: action, action: end, say: Bye.}\n")
    attempt = make_attempt(db, conversation={**CONVERSATION, "script": str(script)})
    script.write_text("name: mine\nstart: a\nnodes:\n  a: {type: action, action: fly}\n")
    twiml = answer(client, attempt)
    assert "We are sorry, we cannot continue this call right now." in " ".join(says(twiml))
    assert "<Hangup" in twiml
    assert any(e.action == "conversation.script_error" for e in db.execute(select(AuditEvent)).scalars())


def test_a_campaign_without_a_conversation_script_says_its_text_and_hangs_up(client, db):
    attempt = make_attempt(db, conversation={"record_calls": False}, voice="live")
    twiml = answer(client, attempt)
    assert says(twiml)[0] == "This is a call from Acme Solar." and "<Hangup" in twiml


def test_transcripts_are_readable_by_api_and_cli_and_each_read_is_audited(client, db, attempt, configured,
                                                                          cli_runner):
    import json

    from api_users_support import ApiUsers
    from outbound.cli import app as cli

    reply(client, attempt, answer(client, attempt), SpeechResult="No, we rent", Confidence="0.87")
    _, headers = ApiUsers(configured, {}, {}).add("carol", "compliance")
    response = client.get("/v1/contacts/(310) 555-0123/conversation", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(t["turn"], t["heard"], t["intent"]) for t in body["turns"]] == [(0, None, None), (1, "No, we rent", "no")]
    assert body["turns"][1]["confidence"] == pytest.approx(0.87) and body["facts"][0]["kind"] == "not_interested"
    assert client.get("/v1/contacts/(310) 555-0123/conversation").status_code == 401
    assert client.get("/v1/contacts/12/conversation", headers=headers).status_code == 422
    shown = cli_runner.invoke(cli, ["conversation", "show", PHONE, "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output.strip().splitlines()[-1])["turns"] == body["turns"]
    db.expire_all()
    reads = [(e.actor, e.subject) for e in db.execute(select(AuditEvent).where(
        AuditEvent.action == "conversation.read")).scalars()]
    assert reads[0] == ("carol", PHONE) and reads[1][0].startswith("cli") and len(reads) == 2


def test_the_amd_hook_redirects_a_machine_to_the_voicemail_url(db, attempt):
    import asyncio

    from api.routes.voice import act_on_machine_answer
    from outbound.carrier_events import handle_webhook

    class Carrier:
        redirected: list = []

        def redirect(self, sid, url):
            self.redirected.append((sid, url))

    params = {"CallSid": attempt.carrier_id, "AnsweredBy": "machine_end_beep"}
    result = handle_webhook(db, "amd", params, T0)
    carrier = Carrier()
    asyncio.run(act_on_machine_answer(result, params, T0, carrier, PUBLIC_URL))
    assert carrier.redirected == [(attempt.carrier_id, f"{PUBLIC_URL}/v1/twilio/voicemail/{attempt.id}")]


class _CallControl:
    """Records what the AMD receiver asks of the carrier for a live call."""

    def __init__(self):
        self.redirected: list[tuple[str, str]] = []
        self.hung_up: list[str] = []

    def redirect(self, sid, url):
        self.redirected.append((sid, url))

    def hang_up(self, sid):
        self.hung_up.append(sid)


@pytest.mark.parametrize("policy", ["leave_voicemail", "hang_up"])
def test_a_signed_amd_machine_result_applies_the_campaign_machine_policy_once(client, db, policy):
    attempt = make_attempt(db, conversation={**CONVERSATION, "machine_policy": policy})
    carrier = _CallControl()
    client.app.dependency_overrides[webhooks.get_reply_adapter] = lambda: carrier
    params = {"CallSid": attempt.carrier_id, "AnsweredBy": "machine_end_beep"}
    assert post(client, "/v1/twilio/amd", params).status_code == 200
    assert post(client, "/v1/twilio/amd", params).status_code == 200          # redelivery: nothing more
    if policy == "leave_voicemail":
        assert carrier.redirected == [(attempt.carrier_id, f"{PUBLIC_URL}/v1/twilio/voicemail/{attempt.id}")]
        assert carrier.hung_up == []
    else:
        assert carrier.hung_up == [attempt.carrier_id] and carrier.redirected == []
    human = add_attempt(db, db.get(Campaign, attempt.campaign_id), "+13105550199", carrier_status="in-progress")
    assert post(client, "/v1/twilio/amd", {"CallSid": human.carrier_id, "AnsweredBy": "human"}).status_code == 200
    assert len(carrier.redirected) + len(carrier.hung_up) == 1


def test_a_live_campaign_answer_goes_straight_to_a_free_agent_and_starts_the_abandonment_clock(client, db):
    from outbound import agents
    from outbound.agent_tables import LiveAnswer

    from telephony.adapter import CarrierCall

    class Carrier:
        def __init__(self):
            self.calls = []

        def place_call(self, request):
            self.calls.append(request.to)
            return CarrierCall(sid="CA" + "a" * 32, status="queued")

    carrier = Carrier()
    client.app.dependency_overrides[webhooks.get_reply_adapter] = lambda: carrier
    agents.add_agent(db, "ann", "+12125550150", status="available", actor="test", at=T0)
    db.commit()
    attempt = make_attempt(db, conversation={"seller_name": "Sunrise Solar", "callback_number": "+18005550100"},
                           voice="live")
    twiml = answer(client, attempt)
    assert "<Conference" in twiml and "<Gather" not in twiml
    assert carrier.calls == ["+12125550150"]                    # the free agent is called at once
    db.expire_all()
    assert db.execute(select(LiveAnswer).where(LiveAnswer.attempt_id == attempt.id)).scalar_one().greeted_at == T0
