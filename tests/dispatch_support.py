"""Shared pieces of the scheduler tests: campaigns and contacts in a database, a fake carrier,
a fake national registry. Used by test modules and by the subprocess runner of the crash tests."""
from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Engine

from consent.location import resolve_location
from outbound.campaigns import create_campaign, start_campaign, validate_campaign
from outbound.db import session_scope
from outbound.models import Contact
from telephony.adapter import CallRequest, CarrierCall, CarrierError, SmsRequest

NOON_NEW_YORK = datetime(2026, 7, 15, 16, 0, tzinfo=timezone.utc)      # Wednesday 12:00 EDT
LATE_NEW_YORK = datetime(2026, 7, 16, 2, 0, tzinfo=timezone.utc)       # Wednesday 22:00 EDT
REGISTRY_SYNCED = "2026-07-10T00:00:00Z"


def new_york_phone(index: int) -> str:
    """Distinct valid NANP numbers in New York (212), formatted as a list would hold them."""
    return f"(212) 555-{index:04d}" if index < 10_000 else f"(646) 555-{index - 10_000:04d}"


def campaign_spec(name: str = "c1", **overrides) -> dict:
    spec = {"name": name, "channel": "voice", "purpose": "informational", "voice": "live",
            "automated": True, "caller_id": "+12125550100", "script": "hello",
            "settings": {"cps": 100, "max_concurrent": 1000}}
    settings = overrides.pop("settings", {})
    spec.update(overrides)
    spec["settings"] = {**spec["settings"], **settings}
    return spec


def add_contacts(session, campaign_id: int, phones: list[str], *, line_type: str = "landline",
                 at: datetime = NOON_NEW_YORK, zip_code: str | None = None, state: str | None = None) -> None:
    for phone in phones:
        location = resolve_location(phone, zip_code, state)
        session.add(Contact(campaign_id=campaign_id, e164=location.e164, phone_raw=phone, zip=zip_code,
                            state=state, line_type=line_type, timezones=" ".join(location.timezones),
                            states=" ".join(location.states), created_at=at))
    session.flush()


def grant_consent(engine: Engine, phones: list[str], *, seller: str = "c1", kind: str = "written",
                  channels=("voice", "sms"), purposes=("telemarketing", "informational"),
                  at: datetime = NOON_NEW_YORK) -> None:
    """Consent from `seller` (a campaign's seller is its name unless its settings name one)."""
    from consent import records
    from consent.ledger_io import ConsentIn
    from outbound import audit
    with session_scope(engine) as session:
        for phone in phones:
            e164 = resolve_location(phone, None, None).e164
            records.add_consent(session, ConsentIn(
                phone=e164, kind=kind, channels=list(channels), purposes=list(purposes), seller=seller,
                brand=seller, granted_at=at.replace(month=1), evidence={"source": "web form"}),
                actor="test", at=at.replace(month=1), audit=audit.append)


def running_campaign(engine: Engine, phones: list[str], *, at: datetime = NOON_NEW_YORK, **spec) -> int:
    """A campaign with `phones` as contacts, started at `at`; returns its id."""
    with session_scope(engine) as session:
        campaign = create_campaign(session, validate_campaign(campaign_spec(**spec)), actor="test", at=at)
        add_contacts(session, campaign.id, phones, at=at)
        start_campaign(session, campaign, actor="test", at=at)
        return campaign.id


@dataclass
class FakeRegistry:
    listed: set[str] = field(default_factory=set)
    synced_at: str | None = REGISTRY_SYNCED
    fail: bool = False

    def national_fact(self, phone: str) -> dict:
        if self.fail:
            raise OSError("registry store unreadable")
        return {"listed": phone in self.listed, "registered_on": None, "synced_at": self.synced_at}


@dataclass
class FakeAdapter:
    """Records every carrier request; answers with sequential sids. `before_call` runs inside
    place_call/send_sms (tests assert what is committed at that moment); `after_call` runs once
    the carrier has taken the request (a crash there loses the answer, not the call). The
    lookups list what was taken, as Twilio's lists by To do."""

    name: str = "fake"
    calls: list = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)       # sid -> what fetch_call answers
    refuse_with: CarrierError | None = None
    before_call: object = None
    after_call: object = None
    gone: set[str] = field(default_factory=set)                  # messages the carrier no longer holds
    cancelled: list[str] = field(default_factory=list)
    sid_prefix: str = "CA"
    _sids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def _answer(self, request) -> CarrierCall:
        if self.before_call:
            self.before_call(request)
        if self.refuse_with:
            raise self.refuse_with
        sid = f"{self.sid_prefix}{next(self._sids):032d}"
        self.calls.append((sid, request))
        self.statuses[sid] = "queued"
        if self.after_call:
            self.after_call(request)
        return CarrierCall(sid=sid, status="queued")

    def place_call(self, request: CallRequest) -> CarrierCall:
        return self._answer(request)

    def send_sms(self, request: SmsRequest) -> CarrierCall:
        return self._answer(request)

    def fetch_call(self, sid: str) -> CarrierCall:
        return CarrierCall(sid=sid, status=self.statuses[sid])

    def fetch_message(self, sid: str) -> CarrierCall:
        if sid in self.gone or sid not in self.statuses:
            raise CarrierError(f"Twilio error 20404 (HTTP 404): /Messages/{sid}.json was not found", status=404,
                               code=20404)
        return CarrierCall(sid=sid, status=self.statuses[sid])

    def find_calls(self, to: str, started_after: datetime) -> list[CarrierCall]:
        return [CarrierCall(sid, self.statuses[sid], {"to": r.to, "from": r.from_})
                for sid, r in self.calls if isinstance(r, CallRequest) and r.to == to]

    def find_messages(self, to: str, sent_after: datetime) -> list[CarrierCall]:
        return [CarrierCall(sid, self.statuses[sid], {"to": r.to, "from": r.from_, "body": r.body})
                for sid, r in self.calls if isinstance(r, SmsRequest) and r.to == to and sid not in self.gone]

    def cancel(self, sid: str) -> CarrierCall:
        self.cancelled.append(sid)
        self.statuses[sid] = "canceled"
        return CarrierCall(sid=sid, status="canceled")

    def hang_up(self, sid: str) -> CarrierCall:
        return CarrierCall(sid=sid, status="completed")

    def move_to_conference(self, sid: str, conference: str, twiml_url: str) -> CarrierCall:
        return CarrierCall(sid=sid, status="in-progress")


class FileLogAdapter:
    """A carrier for subprocess tests: each request is one line appended (O_APPEND, one write)
    to a shared log, so several processes' dials, and dials made just before a SIGKILL, are all
    on record. Sids are unique across processes; every call reports `completed` when fetched."""

    name = "file-log"

    def __init__(self, path: str | Path, worker: str):
        self.path, self.worker = str(path), worker
        self._sids = itertools.count(1)

    def _answer(self, request) -> CarrierCall:
        sid = f"CA-{self.worker}-{os.getpid()}-{next(self._sids)}"
        line = json.dumps({"sid": sid, "attempt_id": request.attempt_id, "to": request.to}) + "\n"
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line.encode())
        finally:
            os.close(descriptor)
        return CarrierCall(sid=sid, status="queued")

    def place_call(self, request: CallRequest) -> CarrierCall:
        return self._answer(request)

    def send_sms(self, request: SmsRequest) -> CarrierCall:
        return self._answer(request)

    def fetch_call(self, sid: str) -> CarrierCall:
        return CarrierCall(sid=sid, status="completed")

    def fetch_message(self, sid: str) -> CarrierCall:
        return CarrierCall(sid=sid, status="delivered")

    def find_calls(self, to: str, started_after: datetime) -> list[CarrierCall]:
        """Every request to `to` on the shared log (whichever process made it): the carrier's
        own list, which outlives the workers."""
        return [CarrierCall(sid=dial["sid"], status="completed", extra={"to": to})
                for dial in read_dial_log(self.path) if dial["to"] == to]

    def find_messages(self, to: str, sent_after: datetime) -> list[CarrierCall]:
        return [CarrierCall(sid=call.sid, status="delivered", extra=call.extra) for call in self.find_calls(to, sent_after)]

    def cancel(self, sid: str) -> CarrierCall:
        return CarrierCall(sid=sid, status="canceled")

    def hang_up(self, sid: str) -> CarrierCall:
        return CarrierCall(sid=sid, status="completed")

    def move_to_conference(self, sid: str, conference: str, twiml_url: str) -> CarrierCall:
        return CarrierCall(sid=sid, status="in-progress")


def read_dial_log(path: str | Path) -> list[dict]:
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
