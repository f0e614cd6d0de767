"""The boundary to a carrier: what dispatch and conversations may ask of one.

Two adapters implement it: `telephony.twilio_adapter.TwilioAdapter` (the real SDK) and
`telephony.simulator.SimulatorAdapter` (seeded, deterministic; the embedded default). Carrier
events come back through the webhook code paths (`api/routes/webhooks.py`) in both cases.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


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
    """The carrier refused or failed a request; `status` is its HTTP status when there is one."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class Adapter(Protocol):
    name: str

    def place_call(self, request: CallRequest) -> CarrierCall: ...

    def send_sms(self, request: SmsRequest) -> CarrierCall: ...

    def cancel(self, sid: str) -> CarrierCall: ...

    def hang_up(self, sid: str) -> CarrierCall: ...

    def move_to_conference(self, sid: str, conference: str, twiml_url: str) -> CarrierCall: ...

    def fetch_call(self, sid: str) -> CarrierCall: ...
