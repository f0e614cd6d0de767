"""The Twilio webhook routes: signed against the configured public URL, or refused untouched."""
from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from api.app import create_app
from api.routes import webhooks
from consent.tables import Revocation
from outbound.models import Attempt, AuditEvent, CarrierEvent
from telephony.signatures import sign
from asgi_support import ReadCounter
from webhook_support import (
    CALLER_ID, PUBLIC_URL, OrderCheckingCarrier, add_attempt, add_campaign, call_sid, count, message_sid,
)
from webhook_support import configured, db  # noqa: F401 (fixtures)
from webhook_support import WEBHOOK_TOKEN as TOKEN

PHONE = "+12125550123"


@pytest.fixture
def attempt(db):
    return add_attempt(db, add_campaign(db), PHONE)


@pytest.fixture
def carrier(configured):
    return OrderCheckingCarrier(configured)


@pytest.fixture
def client(carrier):
    app = create_app()
    app.dependency_overrides[webhooks.get_reply_adapter] = lambda: carrier
    # Behind the proxy: the app is reached at a private address, Twilio calls the public one.
    return TestClient(app, base_url="http://10.0.0.5:8000")


def signature(url: str, params: dict, token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def post(client, path, params, *, signed_url=None, token=TOKEN, header=True, query=""):
    url = f"{PUBLIC_URL}{path}" + (f"?{query}" if query else "")
    headers = {"X-Twilio-Signature": signature(signed_url or url, params, token)} if header else {}
    target = path + (f"?{query}" if query else "")
    return client.post(target, content=urlencode(params), headers={
        **headers, "Content-Type": "application/x-www-form-urlencoded"})


def state(session, attempt_id):
    session.expire_all()
    a = session.get(Attempt, attempt_id)
    return (a.status, a.carrier_status, a.outcome, count(session, CarrierEvent), count(session, AuditEvent))


def test_a_request_signed_for_the_public_url_is_applied_although_the_app_sees_another_url(client, db, attempt):
    response = post(client, "/v1/twilio/call-status", {"CallSid": attempt.carrier_id, "CallStatus": "ringing",
                                                       "SequenceNumber": "1"})
    assert response.status_code == 200, response.text
    assert response.json()["carrier_status"] == "ringing" and response.json()["duplicate"] is False
    assert state(db, attempt.id)[:2] == ("dialing", "ringing")


@pytest.mark.parametrize("how", ["unsigned", "wrong token", "signed for request.url", "other host",
                                 "params altered"])
def test_a_request_not_signed_for_the_public_url_is_403_and_changes_nothing(client, db, attempt, how):
    params = {"CallSid": attempt.carrier_id, "CallStatus": "completed", "AnsweredBy": "human"}
    before = state(db, attempt.id)
    if how == "unsigned":
        response = post(client, "/v1/twilio/call-status", params, header=False)
    elif how == "wrong token":
        response = post(client, "/v1/twilio/call-status", params, token="f" * 32)
    elif how == "signed for request.url":
        response = post(client, "/v1/twilio/call-status", params,
                        signed_url="http://10.0.0.5:8000/v1/twilio/call-status")
    elif how == "other host":
        response = post(client, "/v1/twilio/call-status", params,
                        signed_url="https://evil.example.net/v1/twilio/call-status")
    else:
        url = f"{PUBLIC_URL}/v1/twilio/call-status"
        response = client.post("/v1/twilio/call-status", data={**params, "AnsweredBy": "machine_end_beep"},
                               headers={"X-Twilio-Signature": signature(url, params)})
    assert response.status_code == 403
    # Nothing more: neither the header's name nor the public URL the engine signs against.
    assert response.json()["detail"] == "invalid signature"
    assert PUBLIC_URL not in response.text
    assert state(db, attempt.id) == before


@pytest.mark.parametrize("kind", webhooks.KINDS)
def test_every_receiver_refuses_an_unsigned_request_and_stores_nothing(client, db, attempt, kind):
    params = {"CallSid": attempt.carrier_id, "MessageSid": message_sid(), "CallStatus": "completed",
              "MessageStatus": "delivered", "AnsweredBy": "human", "From": PHONE, "Body": "STOP"}
    before = state(db, attempt.id)
    response = post(client, f"/v1/twilio/{kind}", params, header=False)
    assert response.status_code == 403 and response.json()["detail"] == "invalid signature"
    assert state(db, attempt.id) == before
    assert count(db, Revocation) == 0


def test_a_body_that_is_not_a_form_is_415_naming_the_type_and_changes_nothing(client, db, attempt):
    before = state(db, attempt.id)
    response = client.post("/v1/twilio/call-status", json={"CallSid": attempt.carrier_id, "CallStatus": "busy"},
                           headers={"X-Twilio-Signature": "x"})
    assert response.status_code == 415
    assert "application/x-www-form-urlencoded" in response.json()["detail"]
    assert state(db, attempt.id) == before


def test_a_repeated_parameter_is_signed_with_all_its_values(client, db, attempt):
    pairs = [("CallSid", attempt.carrier_id), ("CallStatus", "ringing"), ("Note", "a"), ("Note", "b")]
    url = f"{PUBLIC_URL}/v1/twilio/call-status"
    signed = sign(TOKEN, url, {"CallSid": attempt.carrier_id, "CallStatus": "ringing", "Note": ["a", "b"]})
    headers = {"X-Twilio-Signature": signed, "Content-Type": "application/x-www-form-urlencoded"}
    assert client.post("/v1/twilio/call-status", content=urlencode(pairs), headers=headers).status_code == 200
    dropped = urlencode(pairs[:-1])
    assert client.post("/v1/twilio/call-status", content=dropped, headers=headers).status_code == 403


def test_the_query_string_is_part_of_what_is_signed(client, db, attempt):
    params = {"CallSid": attempt.carrier_id, "SpeechResult": "tuesday"}
    ok = post(client, "/v1/twilio/gather", params, query="turn=3")
    assert ok.status_code == 200 and ok.text.endswith("<Response/>")
    assert ok.headers["content-type"].startswith("application/xml")
    tampered = client.post("/v1/twilio/gather?turn=4", data=params, headers={
        "X-Twilio-Signature": signature(f"{PUBLIC_URL}/v1/twilio/gather?turn=3", params)})
    assert tampered.status_code == 403
    assert db.execute(select(CarrierEvent.event_key)).scalars().all() == ["gather:turn:3"]


def test_a_public_url_with_a_path_prefix_is_signed_with_its_prefix(configured, monkeypatch, carrier, db, attempt):
    monkeypatch.setenv("OUTBOUND_PUBLIC_URL", "https://example.com/outbound/")
    client = TestClient(create_app(), base_url="http://127.0.0.1:8000")
    params = {"CallSid": attempt.carrier_id, "CallStatus": "busy"}
    response = post(client, "/v1/twilio/call-status", params,
                    signed_url="https://example.com/outbound/v1/twilio/call-status")
    assert response.status_code == 200 and response.json()["outcome"] == "busy"


def test_an_unknown_call_is_404_with_the_sid_and_changes_nothing(client, db, attempt):
    unknown = call_sid()
    before = state(db, attempt.id)
    response = post(client, "/v1/twilio/amd", {"CallSid": unknown, "AnsweredBy": "human"})
    assert response.status_code == 404
    assert response.json()["detail"] == f"unknown CallSid {unknown}: no attempt was placed with it"
    assert state(db, attempt.id) == before


def test_a_missing_parameter_is_422_naming_it(client, attempt):
    response = post(client, "/v1/twilio/call-status", {"CallSid": attempt.carrier_id})
    assert response.status_code == 422 and response.json()["detail"] == "call-status: missing CallStatus"


def test_a_redelivered_status_answers_the_same_and_is_marked_duplicate(client, db, attempt):
    params = {"CallSid": attempt.carrier_id, "CallStatus": "no-answer"}
    first, again = post(client, "/v1/twilio/call-status", params), post(client, "/v1/twilio/call-status", params)
    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    assert {**first.json(), "duplicate": True} == again.json()


def test_an_inbound_stop_answers_empty_twiml_and_sends_one_confirmation(client, db, carrier):
    params = {"MessageSid": message_sid(), "From": PHONE, "To": CALLER_ID, "Body": "Stop"}
    responses = [post(client, "/v1/twilio/sms-inbound", params) for _ in range(2)]   # redelivered once
    assert [r.status_code for r in responses] == [200, 200]
    assert all(r.text == webhooks.EMPTY_TWIML for r in responses)
    assert db.execute(select(Revocation.phone)).scalars().all() == [PHONE]
    assert len(carrier.sent) == 1 and carrier.revocations_seen == [1]


@pytest.mark.parametrize("missing", ["OUTBOUND_PUBLIC_URL", "OUTBOUND_TWILIO_AUTH_TOKEN"])
def test_without_configuration_the_webhooks_are_503_naming_the_variable_and_the_app_still_serves(
        outbound_env, monkeypatch, missing):
    for name, value in (("OUTBOUND_PUBLIC_URL", PUBLIC_URL), ("OUTBOUND_TWILIO_AUTH_TOKEN", TOKEN)):
        if name != missing:
            monkeypatch.setenv(name, value)
    client = TestClient(create_app())
    response = client.post("/v1/twilio/call-status", data={"CallSid": "CA1", "CallStatus": "ringing"})
    assert response.status_code == 503 and missing in response.json()["detail"]
    assert client.get("/openapi.json").status_code == 200


def test_voice_twiml_says_the_campaign_script_only_to_a_signed_request(client, db, attempt):
    params = {"CallSid": "CA" + "1" * 32, "AccountSid": "AC" + "2" * 32, "CallStatus": "in-progress"}
    spoken = post(client, f"/v1/twilio/voice/{attempt.id}", params)
    assert spoken.status_code == 200, spoken.text
    assert spoken.headers["content-type"].startswith("application/xml")
    assert "<Say>" in spoken.text and "<Hangup" in spoken.text
    assert post(client, f"/v1/twilio/voice/{attempt.id}", params, header=False).status_code == 403
    assert post(client, "/v1/twilio/voice/999999", params).status_code == 404


# Every Twilio webhook: the status receivers, the voice and conference TwiML, the inbound calls.
WEBHOOK_PATHS = [f"/v1/twilio/{kind}" for kind in webhooks.KINDS] + [
    "/v1/twilio/voice/1", "/v1/twilio/gather/1?turn=1&node=start", "/v1/twilio/voicemail/1",
    "/v1/twilio/inbound-call", "/v1/twilio/inbound-call/choice", "/v1/conference/1/wait",
    "/v1/conference/1/events", "/v1/conference/console"]


async def _post_chunked(app, path: str, chunks) -> tuple[int, int]:
    """POST `chunks` to the ASGI app one message at a time, as a client without Content-Length
    would; returns (status, bytes the app pulled)."""
    pulled, status = 0, []
    source = iter(chunks)
    route, _, query = path.partition("?")

    async def receive():
        nonlocal pulled
        chunk = next(source, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": route, "raw_path": route.encode(), "query_string": query.encode(),
             "root_path": "", "server": ("10.0.0.5", 8000), "client": ("192.0.2.1", 5000),
             "headers": [(b"host", b"10.0.0.5:8000"), (b"content-type", b"application/x-www-form-urlencoded"),
                         (b"x-twilio-signature", b"x"), (b"transfer-encoding", b"chunked")]}
    await app(scope, receive, send)
    return status[0], pulled


@pytest.mark.parametrize("path", WEBHOOK_PATHS)
def test_a_webhook_body_over_64_kb_is_413_before_the_signature_is_checked(carrier, db, attempt, path):
    app = ReadCounter(create_app())
    client = TestClient(app, base_url="http://10.0.0.5:8000")
    big = b"CallSid=" + attempt.carrier_id.encode() + b"&Body=" + b"x" * (64 * 1024)
    announced = client.post(path, content=big, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                        "X-Twilio-Signature": "x"})
    assert announced.status_code == 413, announced.text
    assert "64 KB" in announced.json()["detail"]["message"]
    assert app.bytes_read == 0                      # answered from Content-Length alone

    # No Content-Length: read as a stream and cut off once past the cap, not at the end of the
    # 16 MB offered.
    offered = [b"CallSid=" + attempt.carrier_id.encode() + b"&Body="] + [b"x" * 16 * 1024] * 1000
    status, pulled = asyncio.run(_post_chunked(create_app(), path, offered))
    assert status == 413
    assert pulled < 100 * 1024


def test_a_webhook_body_just_under_64_kb_is_still_read_and_checked(client, db, attempt):
    params = {"CallSid": attempt.carrier_id, "CallStatus": "ringing", "SequenceNumber": "1",
              "Padding": "x" * (60 * 1024)}
    assert post(client, "/v1/twilio/call-status", params).status_code == 200
