"""Tables of the engine: campaigns, contacts, imports, attempts, decisions and the audit log.

The consent tables live in `consent.tables`; importing them here puts every table in one
metadata for migrations.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from consent.sqltypes import instant_field

from consent.tables import (  # noqa: F401  (registers the consent tables in the metadata)
    BusinessRelationship, ConsentRecord, DncEntry, DncSource, Revocation,
)



class Campaign(SQLModel, table=True):
    __tablename__ = "campaigns"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    status: str = Field(default="draft", description="draft | running | paused | completed")
    channel: str = "voice"
    purpose: str = "telemarketing"
    voice: str | None = None       # live | prerecorded | artificial; None for sms
    automated: bool = True
    caller_id: str | None = None
    script: str | None = None
    settings: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The manager who created it: managers see and change only their own campaigns.
    owner_id: int | None = Field(default=None, foreign_key="users.id", index=True)
    created_at: datetime = instant_field()
    updated_at: datetime = instant_field()


class Contact(SQLModel, table=True):
    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("campaign_id", "e164", name="uq_contacts_campaign_e164"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    import_id: int | None = Field(default=None, foreign_key="list_imports.id")
    e164: str = Field(index=True)
    phone_raw: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    zip: str | None = None
    state: str | None = None
    line_type: str = "unknown"
    timezones: str = Field(default="", description="space-separated candidate IANA zones")
    states: str = Field(default="", description="space-separated candidate states")
    attributes: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    source_line: int | None = None
    created_at: datetime = instant_field()


class ListImport(SQLModel, table=True):
    __tablename__ = "list_imports"

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    file_name: str
    file_sha256: str | None = None
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejected_by_reason: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    started_at: datetime = instant_field()
    finished_at: datetime | None = instant_field(nullable=True)
    actor: str = "system"


class ImportReject(SQLModel, table=True):
    __tablename__ = "import_rejects"

    id: int | None = Field(default=None, primary_key=True)
    import_id: int = Field(foreign_key="list_imports.id", index=True)
    line: int
    reason: str
    row: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Attempt(SQLModel, table=True):
    """The unit of work: the database, not the timer, is the record of truth."""

    __tablename__ = "attempts"
    # One row per (campaign, contact, attempt number): starting a campaign twice, or two workers
    # scheduling the same retry, cannot create a second attempt for the same turn.
    __table_args__ = (Index("ix_attempts_status_due", "status", "due_at"),
                      UniqueConstraint("campaign_id", "contact_id", "attempt_no",
                                       name="uq_attempts_campaign_contact_no"))

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    channel: str
    status: str = Field(default="pending", description="pending | claimed | sending | dialing | completed | failed | blocked | cancelled")
    attempt_no: int = 1
    due_at: datetime = instant_field()
    claimed_by: str | None = None
    lease_until: datetime | None = instant_field(nullable=True)
    carrier_id: str | None = Field(default=None, unique=True)
    carrier_status: str | None = Field(default=None, description="last status the carrier reported")
    answered_by: str | None = Field(default=None, description="human | machine_* | fax | unknown (AMD)")
    outcome: str | None = None
    error: str | None = Field(default=None, description="carrier or gate message when failed or blocked")
    decision_id: str | None = Field(default=None, foreign_key="decisions.id")
    allow_expires_at: datetime | None = instant_field(nullable=True)
    dispatched_at: datetime | None = instant_field(nullable=True)
    last_event_at: datetime | None = instant_field(nullable=True)
    created_at: datetime = instant_field()
    updated_at: datetime = instant_field()


class SendPacing(SQLModel, table=True):
    """A campaign's calls-per-second ceiling, shared by every worker: the instant from which its
    next carrier request may be made (`scheduler.pacing.reserve_send_slot` moves it on by 1/cps
    for each request, under the row's lock)."""

    __tablename__ = "send_pacing"

    campaign_id: int = Field(foreign_key="campaigns.id", primary_key=True)
    next_send_at: datetime = instant_field()


class CarrierEvent(SQLModel, table=True):
    """Every webhook the carrier sent, once: handling is idempotent per (carrier id, event)."""

    __tablename__ = "carrier_events"
    __table_args__ = (UniqueConstraint("carrier_id", "event_key", name="uq_carrier_events_id_key"),)

    id: int | None = Field(default=None, primary_key=True)
    carrier_id: str = Field(index=True, description="CallSid or MessageSid")
    event_key: str = Field(description="e.g. status:ringing, amd:machine_end_beep, sms:inbound")
    attempt_id: int | None = Field(default=None, index=True)
    received_at: datetime = instant_field()
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class RulePackSnapshot(SQLModel, table=True):
    """The exact rule pack a stored decision was made under, so replay needs no old code."""

    __tablename__ = "rule_packs"

    version: str = Field(primary_key=True)
    pack: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = instant_field()


class Decision(SQLModel, table=True):
    """A gate decision with the inputs it was derived from, byte for byte."""

    __tablename__ = "decisions"

    id: str = Field(primary_key=True, description="uuid4 hex")
    attempt_id: int | None = Field(default=None, index=True)
    phone: str = Field(index=True)
    verdict: str = Field(index=True)
    rules_version: str = Field(foreign_key="rule_packs.version", index=True)
    scenario: str = Field(sa_column=Column(Text, nullable=False), description="canonical scenario JSON")
    decision: str = Field(sa_column=Column(Text, nullable=False), description="canonical decision JSON")
    # Where the contact was placed (consent.snapshot.location_snapshot), so replay needs neither
    # phonenumbers nor zipcodes as they were; None on decisions stored before migration 0009.
    location: str | None = Field(default=None, sa_column=Column(Text, nullable=True),
                                 description="canonical JSON of the resolved location")
    decided_at: datetime = instant_field(index=True)
    created_at: datetime = instant_field()


class AuditEvent(SQLModel, table=True):
    """Append-only and hash-chained: each row holds the hash of the one before."""

    __tablename__ = "audit_events"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = instant_field()
    actor: str
    action: str = Field(index=True)
    subject: str | None = Field(default=None, index=True)
    payload: str = Field(sa_column=Column(Text, nullable=False), description="canonical JSON")
    prev_hash: str
    hash: str = Field(unique=True)


class AuditHead(SQLModel, table=True):
    """The last link of the chain: lets verify notice rows cut from the end."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    last_id: int = 0
    last_hash: str
    # The id (not the secret) of the HMAC key the chain was written with, so that verify can say
    # "wrong key" instead of "every event edited" (outbound.audit_key.AuditKey.key_id).
    key_id: str | None = None


from outbound.user_tables import ApiToken, User, WebSession  # noqa: E402,F401  (users and credentials)
from outbound.agent_tables import Agent, LiveAnswer, Transfer, TransferPolicy  # noqa: E402,F401  (warm transfer)
from outbound.memory_tables import ConversationFact, ConversationTurn  # noqa: E402,F401  (conversation memory)
