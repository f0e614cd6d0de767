"""Stored facts the gate reads: consent, revocations, business relationships, DNC lists.

Rows are never deleted: consent is superseded, DNC removals are stamped, so any past decision
can be explained from what was on file at its instant.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from consent.sqltypes import instant_field

# Every table of the project shares SQLModel's metadata; this module defines the first ones, so
# the naming convention is set here, before any constraint exists. Named constraints let later
# SQLite batch migrations drop them by name.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}



class ConsentRecord(SQLModel, table=True):
    __tablename__ = "consent_records"

    id: int | None = Field(default=None, primary_key=True)
    phone: str = Field(index=True, description="E.164")
    kind: str = Field(description="written | express")
    channels: str = Field(description="space-separated: voice sms")
    purposes: str = Field(description="space-separated: telemarketing informational")
    # A consent counts only for campaigns of the seller that obtained it. Rows from before
    # migration 0005 may hold "unknown" (consent.ledger_io.UNKNOWN_SELLER), which matches none.
    seller: str = Field(description="the seller that obtained it")
    brand: str | None = None
    granted_at: datetime = instant_field()
    expires_at: datetime | None = instant_field(nullable=True)
    evidence: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    supersedes_id: int | None = Field(default=None, foreign_key="consent_records.id")
    superseded_by_id: int | None = Field(default=None, foreign_key="consent_records.id")
    recorded_at: datetime = instant_field()
    recorded_by: str = "system"


class Revocation(SQLModel, table=True):
    __tablename__ = "revocations"

    id: int | None = Field(default=None, primary_key=True)
    phone: str = Field(index=True)
    channels: str = Field(description="space-separated: voice sms")
    via: str = Field(description="sms_stop | keypress | spoken | email | agent | api")
    received_at: datetime = instant_field()
    recorded_at: datetime = instant_field()
    recorded_by: str = "system"
    note: str | None = None


class BusinessRelationship(SQLModel, table=True):
    __tablename__ = "business_relationships"

    id: int | None = Field(default=None, primary_key=True)
    phone: str = Field(index=True)
    last_transaction_at: datetime | None = instant_field(nullable=True)
    last_inquiry_at: datetime | None = instant_field(nullable=True)
    # An established business relationship is with one seller (47 CFR 64.1200(f)(5)) and exempts
    # only its campaigns. Rows from before migration 0007 may hold "unknown", which matches none.
    seller: str = Field(description="the seller the relationship is with")
    recorded_at: datetime = instant_field()
    recorded_by: str = "system"
    note: str | None = None


class DncSource(SQLModel, table=True):
    """One load of a DNC list: the version a decision names."""

    __tablename__ = "dnc_sources"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True, description="national | national_changes | state | internal | litigator")
    state: str | None = None
    version: str
    file_name: str | None = None
    file_sha256: str | None = None
    entries: int = 0
    synced_at: datetime | None = instant_field(nullable=True)
    loaded_at: datetime = instant_field()
    loaded_by: str = "system"
    meta: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class DncEntry(SQLModel, table=True):
    """A number on a state, internal or litigator list (the national registry lives on disk)."""

    __tablename__ = "dnc_entries"
    __table_args__ = (Index("ix_dnc_entries_kind_phone", "list_kind", "phone"),)

    id: int | None = Field(default=None, primary_key=True)
    source_id: int | None = Field(default=None, foreign_key="dnc_sources.id")
    list_kind: str = Field(description="state | internal | litigator")
    state: str | None = None
    phone: str
    added_at: datetime = instant_field()
    added_by: str = "system"
    reason: str | None = None
    # How an internal entry came (sms_stop | keypress | spoken | email | agent | api for an opt-out,
    # which is also a do-not-call request; manual | cli for one added by hand), and the opt-out's
    # revocation when there is one. None on rows from before migration 0003 and on other lists.
    via: str | None = Field(default=None, description="how the request came")
    revocation_id: int | None = Field(default=None, description="the revocation this opt-out was stored as")
    removed_at: datetime | None = instant_field(nullable=True)
    removed_by: str | None = None
    removal_reason: str | None = None
