"""The boundary to a carrier: what dispatch and conversations may ask of one.

Two adapters implement it: `telephony.twilio_adapter.TwilioAdapter` (the real SDK) and
`telephony.simulator.SimulatorAdapter` (seeded, deterministic; the embedded default). Carrier
events come back through the webhook code paths (`api/routes/webhooks.py`) in both cases.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

E164_PATTERN = re.compile(r"\+[1-9][0-9]{1,14}")
CALL_SID_PATTERN = re.compile(r"CA[0-9a-fA-F]{32}")
# Twilio names an SMS "SM…" and an MMS "MM…"; both are fetched as Messages.
MESSAGE_SID_PATTERN = re.compile(r"(SM|MM)[0-9a-fA-F]{32}")
# 47 CFR 64.1200(a)(6): an unanswered call must ring at least 15 seconds (or four rings) before
# it is disconnected. Twilio's own ceiling for Timeout is 600 s.
MIN_RING_SECONDS = 15
MAX_RING_SECONDS = 600


@dataclass(frozen=True)
class CallRequest:
    to: str                          # E.164
    from_: str                       # caller ID, E.164
    twiml_url: str                   # where the carrier fetches what to say
    status_callback: str             # every status event goes here
    amd_callback: str                # asynchronous answering-machine result
    timeout_seconds: int = 25        # ringing before no-answer; >= 15 s (abandoned-call rule)
    attempt_id: int | None = None


@dataclass(frozen=True)
class SmsRequest:
    to: str
    from_: str
    body: str
    status_callback: str
    attempt_id: int | None = None


@dataclass(frozen=True)
class CarrierCall:
    sid: str
    status: str                      # queued | ringing | in-progress | completed | busy | no-answer | failed | canceled
    extra: dict = field(default_factory=dict)


class CarrierError(RuntimeError):
    """The carrier refused or failed a request; `status` is its HTTP status when there is one,
    `code` the carrier's own error code (Twilio: 21211 invalid To, 21610 recipient unsubscribed…).

    `retryable` says the same request may succeed later (5xx, 429, network). `outcome_unknown`
    says the carrier may have acted on it although we got no answer (a 5xx or a lost response to a
    create): such an attempt must be reconciled (status callback, fetch), never re-sent blindly.
    """

    def __init__(self, message: str, status: int | None = None, retryable: bool = False,
                 code: int | None = None, outcome_unknown: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.code = code
        self.outcome_unknown = outcome_unknown


def require_e164(field_name: str, number: str) -> None:
    if not isinstance(number, str) or not E164_PATTERN.fullmatch(number):
        raise ValueError(f"{field_name} must be an E.164 number such as +14155550123, got {number!r}")


def require_call_sid(sid: str) -> None:
    # Checked before a sid goes into a URL path: a malformed one is a bug on our side, not a
    # carrier error, and must not reach the carrier as some other resource's path.
    if not isinstance(sid, str) or not CALL_SID_PATTERN.fullmatch(sid):
        raise ValueError(f"sid must be a call sid (CA followed by 32 hex digits), got {sid!r}")


def require_message_sid(sid: str) -> None:
    if not isinstance(sid, str) or not MESSAGE_SID_PATTERN.fullmatch(sid):
        raise ValueError(f"sid must be a message sid (SM or MM followed by 32 hex digits), got {sid!r}")


def is_message_sid(sid: str) -> bool:
    """True for an SMS or MMS sid: such an attempt is reconciled with fetch_message, not fetch_call."""
    return isinstance(sid, str) and MESSAGE_SID_PATTERN.fullmatch(sid) is not None


def validate_call_request(request: CallRequest) -> None:
    """Refuse, before any carrier request, a call the carrier should never be asked to place."""
    require_e164("to", request.to)
    require_e164("from_", request.from_)
    if not MIN_RING_SECONDS <= request.timeout_seconds <= MAX_RING_SECONDS:
        raise ValueError(f"timeout_seconds must be between {MIN_RING_SECONDS} and {MAX_RING_SECONDS} "
                         f"(a call rings at least {MIN_RING_SECONDS} s before it is abandoned), "
                         f"got {request.timeout_seconds}")


def validate_sms_request(request: SmsRequest) -> None:
    require_e164("to", request.to)
    require_e164("from_", request.from_)
    if not request.body:
        raise ValueError("body must not be empty")


class Adapter(Protocol):
    name: str

    def place_call(self, request: CallRequest) -> CarrierCall: ...

    def send_sms(self, request: SmsRequest) -> CarrierCall: ...

    def cancel(self, sid: str) -> CarrierCall: ...

    def hang_up(self, sid: str) -> CarrierCall: ...

    def move_to_conference(self, sid: str, conference: str, twiml_url: str) -> CarrierCall: ...

    def redirect(self, sid: str, twiml_url: str) -> CarrierCall: ...

    def fetch_call(self, sid: str) -> CarrierCall: ...

    def fetch_message(self, sid: str) -> CarrierCall:
        """The message as the carrier holds it; CarrierError with status 404 when it holds none."""
        ...

    def find_calls(self, to: str, started_after: datetime) -> list[CarrierCall]:
        """Calls to `to` that started at or after `started_after`, and calls to `to` still queued
        (Twilio gives a queued call no start time). `extra` carries "from" and "start_time"."""
        ...

    def find_messages(self, to: str, sent_after: datetime) -> list[CarrierCall]:
        """Messages to `to` sent at or after `sent_after` (Twilio's DateSent: a message not yet
        sent has none). `extra` carries "from", "body" and "date_sent"."""
        ...
