"""The Twilio adapter: calls and messages through the real `twilio` SDK.

With `api_base` set (OUTBOUND_TWILIO_API_BASE), every REST request goes to that scheme and host
instead of api.twilio.com; that is how the contract tests run the SDK against a local Prism mock
of Twilio's OpenAPI spec, and how a deployment could go through an egress proxy.

Retries. A 429 means Twilio did not take the request, so any request is retried after a backoff.
A 5xx or a network failure is retried only for requests that are safe to repeat (fetch, and the
updates that set a call's status or URL to a fixed value). A create that gets a 5xx may have
dialled or texted anyway; repeating it could reach the person twice, so it raises at once with
`outcome_unknown=True` and the attempt is reconciled instead ("decision before dial, at most
once", DESIGN.md).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from telephony.adapter import (
    CallRequest,
    CarrierCall,
    CarrierError,
    SmsRequest,
    require_call_sid,
    require_e164,
    require_message_sid,
    validate_call_request,
    validate_sms_request,
)

CALL_PROGRESS_EVENTS = ["initiated", "ringing", "answered", "completed"]
# DetectMessageEnd waits for the greeting's beep, so a message left on a machine is recorded whole.
MACHINE_DETECTION = "DetectMessageEnd"
DEFAULT_HTTP_TIMEOUT_SECONDS = 15.0   # a hung connection must not stall a dispatch worker for ever
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF_SECONDS = 0.5
# A lookup by number and start time finds the few calls or texts of one attempt's minutes; more
# than this many means the lookup cannot tell them apart anyway.
LOOKUP_LIMIT = 50

T = TypeVar("T")


class ApiBaseHttpClient(TwilioHttpClient):
    """The SDK's HTTP client, sending every request to `api_base` (scheme, host, port and an
    optional path prefix) instead of the Twilio host the SDK chose. `on_send` sees each prepared
    request as it went on the wire (tests check the form encoding with it)."""

    def __init__(self, api_base: str | None = None,
                 on_send: Callable[[requests.PreparedRequest], None] | None = None,
                 timeout: float | None = DEFAULT_HTTP_TIMEOUT_SECONDS, **kwargs: Any):
        hooks = kwargs.pop("request_hooks", None) or requests.hooks.default_hooks()
        if on_send is not None:
            # A response hook is the one place where requests exposes the prepared (encoded)
            # request without re-implementing TwilioHttpClient.request.
            hooks.setdefault("response", []).append(lambda response, *a, **kw: on_send(response.request))
        super().__init__(request_hooks=hooks, timeout=timeout, **kwargs)
        self.api_base = parse_api_base(api_base) if api_base else None

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        return super().request(method, self.rewrite(url), *args, **kwargs)

    def rewrite(self, url: str) -> str:
        if self.api_base is None:
            return url
        scheme, netloc, prefix = self.api_base
        original = urlsplit(url)
        return urlunsplit((scheme, netloc, prefix + original.path, original.query, original.fragment))


def parse_api_base(api_base: str) -> tuple[str, str, str]:
    parts = urlsplit(api_base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"api_base must be an absolute http(s) URL such as http://127.0.0.1:4010, "
                         f"got {api_base!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"api_base must not carry a query or fragment, got {api_base!r}")
    return parts.scheme, parts.netloc, parts.path.rstrip("/")


class TwilioAdapter:
    name = "twilio"

    def __init__(self, account_sid: str, auth_token: str, api_base: str | None = None,
                 http_client: HttpClient | None = None, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
                 sleep: Callable[[float], None] = time.sleep):
        if not account_sid or not auth_token:
            raise ValueError("account_sid and auth_token are required")
        if api_base is not None and http_client is not None:
            # The given client would be used as is and api_base silently ignored.
            raise ValueError("pass api_base or http_client, not both "
                             "(ApiBaseHttpClient(api_base) is an http_client that honours it)")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.client = Client(account_sid, auth_token,
                             http_client=http_client or ApiBaseHttpClient(api_base))
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep

    def place_call(self, request: CallRequest) -> CarrierCall:
        validate_call_request(request)
        call = self._create(lambda: self.client.calls.create(
            to=request.to,
            from_=request.from_,
            url=request.twiml_url,
            method="POST",
            status_callback=request.status_callback,
            status_callback_event=CALL_PROGRESS_EVENTS,
            status_callback_method="POST",
            machine_detection=MACHINE_DETECTION,
            # Async AMD: the call is connected to the TwiML at once and the verdict arrives on its
            # own callback. With synchronous AMD a person who answers hears seconds of silence,
            # and a call not connected within two seconds of the greeting counts as abandoned.
            async_amd="true",
            async_amd_status_callback=request.amd_callback,
            async_amd_status_callback_method="POST",
            timeout=request.timeout_seconds,
        ))
        return call_from_instance(call)

    def send_sms(self, request: SmsRequest) -> CarrierCall:
        validate_sms_request(request)
        message = self._create(lambda: self.client.messages.create(
            to=request.to, from_=request.from_, body=request.body,
            status_callback=request.status_callback,
        ))
        return message_from_instance(message)

    def cancel(self, sid: str) -> CarrierCall:
        """Stop a call that is queued or ringing; Twilio leaves a call in progress untouched."""
        return self._update(sid, status="canceled")

    def hang_up(self, sid: str) -> CarrierCall:
        return self._update(sid, status="completed")

    def move_to_conference(self, sid: str, conference: str, twiml_url: str) -> CarrierCall:
        """Redirect a live call to `twiml_url`, whose TwiML dials it into `conference`."""
        call = self._update(sid, url=twiml_url, method="POST")
        return CarrierCall(call.sid, call.status, {**call.extra, "conference": conference})

    def redirect(self, sid: str, twiml_url: str) -> CarrierCall:
        """Make a live call fetch new TwiML from `twiml_url` (e.g. a voicemail after the beep)."""
        return self._update(sid, url=twiml_url, method="POST")

    def fetch_call(self, sid: str) -> CarrierCall:
        require_call_sid(sid)
        return call_from_instance(self._idempotent(lambda: self.client.calls(sid).fetch()))

    def fetch_message(self, sid: str) -> CarrierCall:
        require_message_sid(sid)
        return message_from_instance(self._idempotent(lambda: self.client.messages(sid).fetch()))

    def find_calls(self, to: str, started_after: datetime) -> list[CarrierCall]:
        """Calls to `to` started at or after `started_after`, and those still queued: Twilio gives
        a queued call no StartTime, so the time filter alone would miss it."""
        require_e164("to", to)
        started = self._idempotent(lambda: self.client.calls.list(
            to=to, start_time_after=started_after, limit=LOOKUP_LIMIT))
        queued = self._idempotent(lambda: self.client.calls.list(to=to, status="queued", limit=LOOKUP_LIMIT))
        found = {call.sid: call_from_instance(call) for call in (*started, *queued)}
        return list(found.values())

    def find_messages(self, to: str, sent_after: datetime) -> list[CarrierCall]:
        require_e164("to", to)
        messages = self._idempotent(lambda: self.client.messages.list(
            to=to, date_sent_after=sent_after, limit=LOOKUP_LIMIT))
        return [message_from_instance(message) for message in messages]

    def _update(self, sid: str, **fields: str) -> CarrierCall:
        require_call_sid(sid)
        # Safe to repeat: setting a status twice is setting it once, and a repeated redirect
        # fetches the same TwiML, which dials the same conference.
        return call_from_instance(self._idempotent(lambda: self.client.calls(sid).update(**fields)))

    def _create(self, send: Callable[[], T]) -> T:
        return self._with_retries(send, retry_on=is_rejected_unprocessed)

    def _idempotent(self, send: Callable[[], T]) -> T:
        return self._with_retries(send, retry_on=lambda error: error.retryable)

    def _with_retries(self, send: Callable[[], T], retry_on: Callable[[CarrierError], bool]) -> T:
        for attempt in range(1, self.max_attempts + 1):
            try:
                return send()
            except (TwilioRestException, TwilioServiceException, requests.RequestException) as exc:
                error = carrier_error_from(exc)
                if attempt == self.max_attempts or not retry_on(error):
                    raise error from exc
            self.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        raise AssertionError("unreachable: the last attempt returns or raises")


def is_rejected_unprocessed(error: CarrierError) -> bool:
    """True when the carrier certainly did not act on the request: a 429 is Twilio's refusal to
    take it (rate or concurrency limit), and a failed connect never delivered it."""
    return error.retryable and not error.outcome_unknown


def carrier_error_from(exc: Exception) -> CarrierError:
    """One CarrierError from whatever the SDK or the HTTP layer raised."""
    if isinstance(exc, TwilioServiceException):
        detail = f": {exc.detail}" if exc.detail else ""
        return _http_error(exc.status, exc.code, f"{exc.title}{detail}", exc.method, exc.uri)
    if isinstance(exc, TwilioRestException):
        return _http_error(exc.status, exc.code, exc.msg, exc.method, exc.uri)
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return CarrierError(f"Twilio request failed without an answer: {exc}", status=None,
                            retryable=True, outcome_unknown=not never_sent(exc))
    return CarrierError(f"Twilio request failed: {exc}", status=None, retryable=False)


def never_sent(exc: requests.RequestException) -> bool:
    """True when the connection itself failed (refused, unresolvable host, connect timeout), so
    no byte of the request reached the carrier. A read timeout or a reset may follow a request
    the carrier acted on."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _http_error(status: int, code: int | None, message: str, method: str, uri: str) -> CarrierError:
    status = int(status)
    retryable = status >= 500 or status == 429
    code_text = f"Twilio error {code}" if code and code != status else "Twilio error"
    return CarrierError(f"{code_text} (HTTP {status}) on {method} {uri}: {message}",
                        status=status, retryable=retryable, code=code if code != status else None,
                        outcome_unknown=status >= 500)


def call_from_instance(call: Any) -> CarrierCall:
    # The SDK names the caller `_from` on a call but `from_` on a message.
    return CarrierCall(sid=call.sid, status=str(call.status),
                       extra={"to": call.to, "from": call._from, "direction": call.direction,
                              "duration": call.duration, "answered_by": call.answered_by,
                              "start_time": call.start_time})


def message_from_instance(message: Any) -> CarrierCall:
    return CarrierCall(sid=message.sid, status=str(message.status),
                       extra={"to": message.to, "from": message.from_, "segments": message.num_segments,
                              "body": message.body, "date_sent": message.date_sent})
