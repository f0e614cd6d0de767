"""Webhook signatures: Twilio's algorithm, checked against the configured public URL."""
from __future__ import annotations

import pytest

from telephony.signatures import public_url, sign, validate_twilio_request

# Twilio's published example (twilio-python, twilio-csharp and twilio-php request validator tests).
DOC_TOKEN = "12345"
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
              "From": "+14158675309", "To": "+18005551212"}
DOC_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="

TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://calls.example.com"
PATH = "/webhooks/voice/status"
PARAMS = {"CallSid": "CA" + "a" * 32, "CallStatus": "completed", "CallDuration": "42",
          "From": "+14155550100", "To": "+14155550101"}


def twilio_signature(params=PARAMS, url=f"{PUBLIC}{PATH}?attempt=7", token=TOKEN) -> str:
    return sign(token, url, params)


def test_sign_reproduces_twilios_published_vector():
    assert sign(DOC_TOKEN, DOC_URL, DOC_PARAMS) == DOC_SIGNATURE


def test_the_published_vector_validates_through_the_configured_url():
    assert validate_twilio_request(DOC_TOKEN, "https://mycompany.com", "/myapp.php", "foo=1&bar=2",
                                   DOC_PARAMS, DOC_SIGNATURE)


def test_a_genuine_request_is_accepted():
    assert validate_twilio_request(TOKEN, PUBLIC, PATH, "attempt=7", PARAMS, twilio_signature())


@pytest.mark.parametrize("tamper", [
    pytest.param(lambda r: {**r, "params": {**PARAMS, "CallStatus": "busy"}}, id="changed param"),
    pytest.param(lambda r: {**r, "params": {**PARAMS, "AnsweredBy": "human"}}, id="added param"),
    pytest.param(lambda r: {**r, "params": {k: v for k, v in PARAMS.items() if k != "To"}}, id="removed param"),
    pytest.param(lambda r: {**r, "path": "/webhooks/voice/amd"}, id="other path"),
    pytest.param(lambda r: {**r, "query": "attempt=8"}, id="other query"),
    pytest.param(lambda r: {**r, "query": None}, id="query dropped"),
    pytest.param(lambda r: {**r, "public_url_base": "https://evil.example.com"}, id="other host"),
    pytest.param(lambda r: {**r, "auth_token": TOKEN[::-1]}, id="other token"),
    pytest.param(lambda r: {**r, "signature": r["signature"][:-2] + "A="}, id="changed signature"),
    pytest.param(lambda r: {**r, "signature": ""}, id="no signature"),
    pytest.param(lambda r: {**r, "signature": None}, id="signature header missing"),
])
def test_a_tampered_request_is_rejected(tamper):
    genuine = {"auth_token": TOKEN, "public_url_base": PUBLIC, "path": PATH, "query": "attempt=7",
               "params": PARAMS, "signature": twilio_signature()}
    assert validate_twilio_request(**genuine)
    assert not validate_twilio_request(**tamper(genuine))


def test_behind_a_proxy_the_configured_url_counts_not_the_one_the_app_sees():
    # Twilio called https://calls.example.com/…; the proxy forwarded to http://10.0.0.5:8000/….
    signature = twilio_signature(url=f"{PUBLIC}{PATH}")
    seen_by_app = f"http://10.0.0.5:8000{PATH}"

    assert validate_twilio_request(TOKEN, PUBLIC, PATH, "", PARAMS, signature)
    assert not validate_twilio_request(TOKEN, "http://10.0.0.5:8000", PATH, "", PARAMS, signature)
    assert sign(TOKEN, seen_by_app, PARAMS) != signature


def test_a_public_base_with_a_path_prefix_and_trailing_slash():
    signature = twilio_signature(url=f"https://example.com/outbound{PATH}")
    assert validate_twilio_request(TOKEN, "https://example.com/outbound/", PATH, None, PARAMS, signature)


def test_a_signature_made_with_the_explicit_default_port_is_accepted():
    # Twilio's signing is inconsistent about :443; its SDK accepts either form, and so do we.
    signature = twilio_signature(url=f"https://calls.example.com:443{PATH}")
    assert validate_twilio_request(TOKEN, PUBLIC, PATH, None, PARAMS, signature)


def test_repeated_form_keys_are_signed_with_every_value():
    params = {**PARAMS, "StatusCallbackEvent": ["initiated", "ringing"]}
    signature = sign(TOKEN, f"{PUBLIC}{PATH}", params)

    assert validate_twilio_request(TOKEN, PUBLIC, PATH, None, params, signature)
    assert not validate_twilio_request(TOKEN, PUBLIC, PATH, None,
                                       {**PARAMS, "StatusCallbackEvent": ["initiated"]}, signature)


def test_an_empty_auth_token_is_an_error_not_a_key():
    with pytest.raises(ValueError, match="auth_token is required"):
        validate_twilio_request("", PUBLIC, PATH, None, PARAMS, twilio_signature(token=""))


@pytest.mark.parametrize("base,path,message", [
    ("calls.example.com", PATH, "absolute URL"),
    (PUBLIC, "webhooks/voice", "must start with '/'"),
])
def test_an_unusable_public_url_is_an_error(base, path, message):
    with pytest.raises(ValueError, match=message):
        public_url(base, path)
