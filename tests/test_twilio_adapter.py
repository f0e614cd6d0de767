"""The Twilio adapter, through the real SDK.

Contract: against Prism serving Twilio's own OpenAPI spec (see tests/prism.py). Prism validates
each request against the spec (422 on a missing `To`, a non-integer `Timeout`, a malformed sid)
and answers the spec's first example, so a call that succeeds proves the form was valid, and the
answer must be that example. What went on the wire is captured in ApiBaseHttpClient.

Carrier errors: a tiny local HTTP server answers what Twilio answers on failure (Prism only knows
the spec's 2xx examples), so retries and error mapping run through the same SDK code.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from prism import TWILIO_SPEC, free_port, patch_form_arrays, prism_url  # noqa: F401  (prism_url is a fixture)
from twilio.base.exceptions import TwilioRestException

from telephony.adapter import CallRequest, CarrierError, SmsRequest
from telephony.twilio_adapter import (
    CALL_PROGRESS_EVENTS,
    ApiBaseHttpClient,
    TwilioAdapter,
    carrier_error_from,
)

ACCOUNT = "AC" + "1" * 32
TOKEN = "test-auth-token"
CALL_SID = "CA" + "b" * 32
CALL = CallRequest(to="+14155550101", from_="+14155550100",
                   twiml_url="https://calls.example.com/twiml/attempts/7",
                   status_callback="https://calls.example.com/webhooks/voice/status",
                   amd_callback="https://calls.example.com/webhooks/voice/amd",
                   timeout_seconds=25, attempt_id=7)
SMS = SmsRequest(to="+14155550101", from_="+14155550100", body="Your appointment is tomorrow at 10.",
                 status_callback="https://calls.example.com/webhooks/sms/status")
CALLS_PATH = "/2010-04-01/Accounts/{AccountSid}/Calls.json"
CALL_PATH = "/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json"
MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
VENDORED_SPEC_SHA256 = "9dab5e647861f07d2ea329f7e59ab7cb729c235a65616f9b83e2f2c62a3f7bcb"   # tests/twilio_oai/README.md


def spec_example(path: str, method: str, status: str) -> dict:
    """The example Prism answers with: the first one of the operation's response."""
    spec = json.loads(TWILIO_SPEC.read_text(encoding="utf-8"))
    examples = spec["paths"][path][method]["responses"][status]["content"]["application/json"]["examples"]
    return next(iter(examples.values()))["value"]


def form(prepared: requests.PreparedRequest) -> dict[str, list[str]]:
    return parse_qs(prepared.body or "", keep_blank_values=True)


@pytest.fixture
def sent() -> list[requests.PreparedRequest]:
    return []


@pytest.fixture
def adapter(prism_url: str, sent: list) -> TwilioAdapter:  # noqa: F811
    return TwilioAdapter(ACCOUNT, TOKEN, http_client=ApiBaseHttpClient(prism_url, on_send=sent.append),
                         sleep=lambda seconds: pytest.fail("no retry expected against Prism"))


# -- against Prism ---------------------------------------------------------------------------

def test_the_spec_copy_explodes_every_form_array_and_the_vendored_spec_is_untouched():
    raw = TWILIO_SPEC.read_bytes()
    spec = json.loads(raw)

    assert patch_form_arrays(spec) == 4    # create a call, a call recording, a participant, a message
    calls = spec["paths"][CALLS_PATH]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
    assert calls["encoding"]["StatusCallbackEvent"] == {"style": "form", "explode": True}
    assert hashlib.sha256(raw).hexdigest() == VENDORED_SPEC_SHA256


def test_place_call_sends_every_parameter_the_spec_and_our_rules_need(adapter, sent, prism_url):  # noqa: F811
    example = spec_example(CALLS_PATH, "post", "201")

    call = adapter.place_call(CALL)

    assert (call.sid, call.status) == (example["sid"], example["status"])
    [request] = sent
    assert request.method == "POST"
    assert request.url == f"{prism_url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    assert request.headers["Authorization"].startswith("Basic ")
    body = form(request)
    assert body["To"] == [CALL.to] and body["From"] == [CALL.from_]
    assert body["Url"] == [CALL.twiml_url] and body["Method"] == ["POST"]
    assert body["StatusCallback"] == [CALL.status_callback]
    assert body["StatusCallbackMethod"] == ["POST"]
    # Repeated keys, one per event, in order: what Twilio expects and the patched spec accepts.
    assert body["StatusCallbackEvent"] == CALL_PROGRESS_EVENTS
    assert "StatusCallbackEvent=initiated&StatusCallbackEvent=ringing" in request.body
    assert body["MachineDetection"] == ["DetectMessageEnd"]
    assert body["AsyncAmd"] == ["true"]
    assert body["AsyncAmdStatusCallback"] == [CALL.amd_callback]
    assert body["AsyncAmdStatusCallbackMethod"] == ["POST"]
    assert int(body["Timeout"][0]) == CALL.timeout_seconds >= 15


def test_prism_really_validates_a_call_without_to(adapter, sent):
    # The SDK leaves out a None parameter, so this form has no To: Prism must refuse it, or the
    # successful calls above would prove nothing.
    with pytest.raises(TwilioRestException) as raised:
        adapter.client.calls.create(to=None, from_=CALL.from_, url=CALL.twiml_url)

    error = carrier_error_from(raised.value)
    assert error.status == 422 and not error.retryable and not error.outcome_unknown
    assert "To" not in form(sent[0])


def test_send_sms_posts_to_from_body_and_callback(adapter, sent):
    example = spec_example(MESSAGES_PATH, "post", "201")

    message = adapter.send_sms(SMS)

    assert (message.sid, message.status) == (example["sid"], example["status"])
    body = form(sent[0])
    assert body == {"To": [SMS.to], "From": [SMS.from_], "Body": [SMS.body],
                    "StatusCallback": [SMS.status_callback]}


@pytest.mark.parametrize("operation,expected_form", [
    (lambda a: a.cancel(CALL_SID), {"Status": ["canceled"]}),
    (lambda a: a.hang_up(CALL_SID), {"Status": ["completed"]}),
    (lambda a: a.move_to_conference(CALL_SID, "attempt-7", "https://calls.example.com/twiml/bridge/7"),
     {"Url": ["https://calls.example.com/twiml/bridge/7"], "Method": ["POST"]}),
    (lambda a: a.redirect(CALL_SID, "https://calls.example.com/v1/twilio/voicemail/7"),
     {"Url": ["https://calls.example.com/v1/twilio/voicemail/7"], "Method": ["POST"]}),
], ids=["cancel", "hang_up", "move_to_conference", "redirect"])
def test_call_updates_post_to_the_call_resource(adapter, sent, prism_url, operation, expected_form):  # noqa: F811
    example = spec_example(CALL_PATH, "post", "200")

    call = operation(adapter)

    assert (call.sid, call.status) == (example["sid"], example["status"])
    [request] = sent
    assert request.method == "POST"
    assert request.url == f"{prism_url}/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL_SID}.json"
    assert form(request) == expected_form


def test_move_to_conference_names_the_conference(adapter):
    call = adapter.move_to_conference(CALL_SID, "attempt-7", "https://calls.example.com/twiml/bridge/7")
    assert call.extra["conference"] == "attempt-7"


def test_fetch_call_reads_the_call_resource(adapter, sent, prism_url):  # noqa: F811
    example = spec_example(CALL_PATH, "get", "200")

    call = adapter.fetch_call(CALL_SID)

    assert (call.sid, call.status) == (example["sid"], example["status"])
    assert call.extra["to"] == example["to"] and call.extra["duration"] == example["duration"]
    assert sent[0].method == "GET"
    assert sent[0].url == f"{prism_url}/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL_SID}.json"


# -- refused before any request ---------------------------------------------------------------

class NoNetwork(ApiBaseHttpClient):
    def request(self, *args, **kwargs):
        raise AssertionError("a request was sent")


@pytest.fixture
def offline() -> TwilioAdapter:
    return TwilioAdapter(ACCOUNT, TOKEN, http_client=NoNetwork())


@pytest.mark.parametrize("changes,field", [
    ({"to": "4155550101"}, "to"),
    ({"to": "+1 415 555 0101"}, "to"),
    ({"from_": "(415) 555-0100"}, "from_"),
    ({"from_": "+0415555010"}, "from_"),
])
def test_a_number_not_in_e164_is_refused_naming_the_field(offline, changes, field):
    request = CallRequest(**{**CALL.__dict__, **changes})
    with pytest.raises(ValueError, match=rf"^{field} must be an E\.164 number"):
        offline.place_call(request)


def test_an_sms_to_a_number_not_in_e164_is_refused(offline):
    with pytest.raises(ValueError, match=r"^to must be an E\.164 number"):
        offline.send_sms(SmsRequest(**{**SMS.__dict__, "to": "555-0101"}))


def test_a_ring_time_under_15_seconds_is_refused(offline):
    with pytest.raises(ValueError, match="at least 15 s"):
        offline.place_call(CallRequest(**{**CALL.__dict__, "timeout_seconds": 14}))


def test_a_malformed_sid_never_reaches_a_url(offline):
    with pytest.raises(ValueError, match="sid must be a call sid"):
        offline.cancel("CA123/../../Messages")


def test_api_base_and_http_client_together_are_refused():
    with pytest.raises(ValueError, match="not both"):
        TwilioAdapter(ACCOUNT, TOKEN, api_base="http://127.0.0.1:4010", http_client=NoNetwork())


def test_api_base_keeps_path_and_query_and_adds_a_prefix():
    client = ApiBaseHttpClient("http://127.0.0.1:4010/twilio/")
    assert (client.rewrite("https://api.twilio.com/2010-04-01/Accounts/AC1/Calls.json?PageSize=2")
            == "http://127.0.0.1:4010/twilio/2010-04-01/Accounts/AC1/Calls.json?PageSize=2")


# -- carrier errors, from a local server answering like Twilio --------------------------------

class ScriptedTwilio:
    """Answers each request with the next scripted (status, JSON body); records the requests."""

    def __init__(self, answers: list[tuple[int, dict]]):
        self.answers = list(answers)
        self.requests: list[tuple[str, str]] = []


@pytest.fixture
def scripted() -> Iterator[tuple[ScriptedTwilio, str]]:
    script = ScriptedTwilio([])

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            script.requests.append((self.command, urlsplit(self.path).path))
            self.rfile.read(length)
            status, body = script.answers.pop(0)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield script, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def adapter_on(api_base: str, sleeps: list[float]) -> TwilioAdapter:
    return TwilioAdapter(ACCOUNT, TOKEN, api_base=api_base, sleep=sleeps.append)


CALL_JSON = {"sid": CALL_SID, "status": "queued", "to": CALL.to, "from": CALL.from_}
INVALID_TO = {"code": 21211, "message": "The 'To' number +14155550101 is not a valid phone number.",
              "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}
SERVER_ERROR = {"code": 20500, "message": "An internal server error has occurred",
                "more_info": "https://www.twilio.com/docs/errors/20500", "status": 500}
TOO_MANY = {"code": 20429, "message": "Too Many Requests",
            "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429}


def test_a_4xx_is_a_carrier_error_with_twilios_code_and_message_and_no_retry(scripted):
    script, base = scripted
    script.answers = [(400, INVALID_TO)]
    sleeps: list[float] = []

    with pytest.raises(CarrierError) as raised:
        adapter_on(base, sleeps).place_call(CALL)

    error = raised.value
    assert "21211" in str(error) and "is not a valid phone number" in str(error)
    assert (error.status, error.code, error.retryable, error.outcome_unknown) == (400, 21211, False, False)
    assert len(script.requests) == 1 and sleeps == []


def test_a_5xx_on_fetch_is_retried_with_backoff_then_raised(scripted):
    script, base = scripted
    script.answers = [(500, SERVER_ERROR)] * 3
    sleeps: list[float] = []

    with pytest.raises(CarrierError) as raised:
        adapter_on(base, sleeps).fetch_call(CALL_SID)

    assert (raised.value.status, raised.value.code, raised.value.retryable) == (500, 20500, True)
    assert "An internal server error has occurred" in str(raised.value)
    assert script.requests == [("GET", f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL_SID}.json")] * 3
    assert sleeps == [0.5, 1.0]


def test_a_5xx_then_success_returns_the_call(scripted):
    script, base = scripted
    script.answers = [(503, {**SERVER_ERROR, "status": 503}), (200, {**CALL_JSON, "status": "canceled"})]
    sleeps: list[float] = []

    call = adapter_on(base, sleeps).cancel(CALL_SID)

    assert call.status == "canceled" and len(script.requests) == 2 and sleeps == [0.5]


def test_a_429_on_create_is_retried_because_twilio_did_not_take_it(scripted):
    script, base = scripted
    script.answers = [(429, TOO_MANY), (201, CALL_JSON)]
    sleeps: list[float] = []

    call = adapter_on(base, sleeps).place_call(CALL)

    assert call.sid == CALL_SID and len(script.requests) == 2 and sleeps == [0.5]


def test_a_5xx_on_create_is_not_repeated_because_the_call_may_be_ringing(scripted):
    script, base = scripted
    script.answers = [(500, SERVER_ERROR), (201, CALL_JSON)]
    sleeps: list[float] = []

    with pytest.raises(CarrierError) as raised:
        adapter_on(base, sleeps).place_call(CALL)

    assert raised.value.retryable and raised.value.outcome_unknown
    assert len(script.requests) == 1 and sleeps == []


def test_a_refused_connection_is_retried_even_for_a_create():
    sleeps: list[float] = []
    adapter = adapter_on(f"http://127.0.0.1:{free_port()}", sleeps)   # nothing listens there

    with pytest.raises(CarrierError) as raised:
        adapter.place_call(CALL)

    assert raised.value.status is None and raised.value.retryable
    assert not raised.value.outcome_unknown
    assert sleeps == [0.5, 1.0]


# -- lookups the reaper makes for an attempt whose sid a crash lost ----------------------------

MESSAGE_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json"
MESSAGE_SID = "SM" + "c" * 32
SINCE = datetime(2026, 7, 15, 16, 0, 5, tzinfo=timezone.utc)


def query(prepared: requests.PreparedRequest) -> dict[str, list[str]]:
    return parse_qs(urlsplit(prepared.url).query)


def test_find_calls_lists_by_to_and_start_time_and_the_queued_ones(adapter, sent, prism_url):  # noqa: F811
    calls = adapter.find_calls("+14155550101", SINCE)

    assert isinstance(calls, list)
    assert [(r.method, urlsplit(r.url).path) for r in sent] == [
        ("GET", f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json")] * 2
    # Twilio gives a queued call no StartTime: the second list finds those.
    assert query(sent[0]) == {"To": ["+14155550101"], "StartTime>": ["2026-07-15T16:00:05Z"], "PageSize": ["50"]}
    assert query(sent[1]) == {"To": ["+14155550101"], "Status": ["queued"], "PageSize": ["50"]}


def test_find_messages_lists_by_to_and_date_sent(adapter, sent, prism_url):  # noqa: F811
    messages = adapter.find_messages("+14155550101", SINCE)

    assert isinstance(messages, list)
    assert sent[0].method == "GET" and urlsplit(sent[0].url).path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert query(sent[0]) == {"To": ["+14155550101"], "DateSent>": ["2026-07-15T16:00:05Z"], "PageSize": ["50"]}


def test_fetch_message_reads_the_message_resource(adapter, sent, prism_url):  # noqa: F811
    example = spec_example(MESSAGE_PATH, "get", "200")

    message = adapter.fetch_message(MESSAGE_SID)

    assert (message.sid, message.status) == (example["sid"], example["status"])
    assert message.extra["body"] == example["body"] and message.extra["to"] == example["to"]
    assert sent[0].method == "GET"
    assert sent[0].url == f"{prism_url}/2010-04-01/Accounts/{ACCOUNT}/Messages/{MESSAGE_SID}.json"


def test_a_call_sid_is_not_fetched_as_a_message_nor_a_message_sid_as_a_call(offline):
    with pytest.raises(ValueError, match="message sid"):
        offline.fetch_message(CALL_SID)
    with pytest.raises(ValueError, match="call sid"):
        offline.fetch_call(MESSAGE_SID)
