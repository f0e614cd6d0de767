"""Shared pieces of the carrier-event tests: a campaign with dialed attempts, a fake retry hook
and a fake carrier that checks an opt-out is committed before any reply leaves."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from consent.tables import Revocation
from outbound.models import Attempt, AuditEvent, Campaign, CarrierEvent, Contact
from telephony.adapter import CarrierCall, CarrierError, SmsRequest

T0 = datetime(2026, 7, 15, 16, 0, tzinfo=timezone.utc)
CALLER_ID = "+12125550100"
_sids = itertools.count(1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def call_sid() -> str:
    return f"CA{next(_sids):032x}"


def message_sid() -> str:
    return f"SM{next(_sids):032x}"


def add_campaign(session: Session, name: str = "Acme Solar", *, status: str = "running",
                 channel: str = "voice", settings: dict | None = None) -> Campaign:
    campaign = Campaign(name=name, status=status, channel=channel, voice="live" if channel == "voice" else None,
                        caller_id=CALLER_ID, settings=settings or {}, created_at=T0, updated_at=T0)
    session.add(campaign)
    session.flush()
    return campaign


def add_attempt(session: Session, campaign: Campaign, phone: str, *, sid: str | None = None,
                channel: str = "voice", status: str = "dialing",
                carrier_status: str | None = "queued") -> Attempt:
    contact = session.execute(select(Contact).where(Contact.campaign_id == campaign.id,
                                                    Contact.e164 == phone)).scalar_one_or_none()
    if contact is None:
        contact = Contact(campaign_id=campaign.id, e164=phone, phone_raw=phone, created_at=T0)
        session.add(contact)
        session.flush()
    attempt = Attempt(campaign_id=campaign.id, contact_id=contact.id, channel=channel, status=status,
                      due_at=T0, carrier_id=sid or (call_sid() if channel == "voice" else message_sid()),
                      carrier_status=carrier_status, created_at=T0, updated_at=T0)
    session.add(attempt)
    session.commit()
    return attempt


def count(session: Session, table) -> int:
    return session.execute(select(func.count()).select_from(table)).scalar_one()


def audit_actions(session: Session) -> list[tuple[str, str]]:
    return [(e.actor, e.action) for e in session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()]


def event_keys(session: Session, carrier_id: str) -> list[str]:
    return sorted(session.execute(select(CarrierEvent.event_key)
                                  .where(CarrierEvent.carrier_id == carrier_id)).scalars())


@dataclass
class RetryRecorder:
    """Stands in for scheduler.retries.schedule_retry and remembers what it was asked."""

    calls: list[tuple[int, str | None, datetime]] = field(default_factory=list)

    def __call__(self, session: Session, attempt: Attempt, now: datetime) -> None:
        self.calls.append((attempt.id, attempt.outcome, now))


class OrderCheckingCarrier:
    """A carrier whose send_sms first looks, from a connection of its own, for the sender's
    revocation: a reply sent before the opt-out is committed fails the test right there."""

    name = "fake"

    def __init__(self, engine: Engine, *, expect_revocation: bool = True, refuse: CarrierError | None = None):
        self.engine = engine
        self.expect_revocation = expect_revocation
        self.refuse = refuse
        self.sent: list[SmsRequest] = []
        self.revocations_seen: list[int] = []

    def send_sms(self, request: SmsRequest) -> CarrierCall:
        with Session(self.engine) as other_connection:
            seen = other_connection.execute(select(func.count()).select_from(Revocation)
                                            .where(Revocation.phone == request.to)).scalar_one()
        self.revocations_seen.append(seen)
        if self.expect_revocation:
            assert seen >= 1, "the reply left before the revocation was committed"
        if self.refuse is not None:
            raise self.refuse
        self.sent.append(request)
        return CarrierCall(sid=message_sid(), status="queued")


WEBHOOK_TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC_URL = "https://calls.example.com"


def configure_webhooks(monkeypatch) -> Engine:
    """Webhooks configured (public URL and auth token) on the app's engine, schema upgraded;
    call it from a fixture that takes `outbound_env_db`."""
    from outbound.db import ensure_schema, get_engine

    monkeypatch.setenv("OUTBOUND_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.setenv("OUTBOUND_TWILIO_AUTH_TOKEN", WEBHOOK_TOKEN)
    engine = get_engine()
    ensure_schema(engine)
    return engine


# Fixtures for the webhook test modules (import them by name there).
@pytest.fixture
def configured(outbound_env_db, monkeypatch) -> Engine:
    return configure_webhooks(monkeypatch)


@pytest.fixture
def db(configured):
    with Session(configured) as session:
        yield session
