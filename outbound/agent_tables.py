"""Tables of warm transfer: agents, transfers, live answers (abandonment) and transfer policies.

Imported at the end of `outbound.models`, so they join the one metadata the migration is
generated from.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from consent.sqltypes import instant_field



class Agent(SQLModel, table=True):
    """A person who takes transferred callers: reached at a phone number or a Twilio Client
    identity (`client:NAME`, the browser console)."""

    __tablename__ = "agents"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    status: str = Field(default="offline", index=True,
                        description="available | busy | wrap_up | offline")
    reach: str = Field(description="E.164 number or client:NAME")
    status_changed_at: datetime = instant_field()
    created_at: datetime = instant_field()
    updated_at: datetime = instant_field()


class Transfer(SQLModel, table=True):
    """One warm transfer of a caller to an agent, from the script's `transfer` to its result."""

    __tablename__ = "transfers"
    __table_args__ = (Index("ix_transfers_state", "state"),)

    id: int | None = Field(default=None, primary_key=True)
    attempt_id: int = Field(foreign_key="attempts.id", index=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    agent_id: int | None = Field(default=None, foreign_key="agents.id", index=True)
    conference: str = Field(unique=True, description="conference FriendlyName")
    state: str = Field(default="waiting", description="waiting | ringing_agent | connected | ended")
    result: str | None = Field(default=None, description="transferred | agent_joined | "
                                                          "caller_hung_up_on_hold | no_agent")
    caller_sid: str | None = None
    agent_sid: str | None = Field(default=None, index=True)
    hold_fetches: int = Field(default=0, description="times the hold audio (wait URL) was fetched")
    declined_by: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    callback_attempt_id: int | None = None
    callback_at: datetime | None = instant_field(nullable=True)
    began_at: datetime = instant_field(index=True)
    wait_until: datetime = instant_field()
    agent_called_at: datetime | None = instant_field(nullable=True)
    agent_joined_at: datetime | None = instant_field(nullable=True)
    caller_left_at: datetime | None = instant_field(nullable=True)
    ended_at: datetime | None = instant_field(nullable=True)
    disposition: str | None = None
    disposition_note: str | None = None


class LiveAnswer(SQLModel, table=True):
    """A person answered a call of an agent campaign: abandoned when no agent is connected
    within two seconds of the greeting (47 CFR 64.1200(a)(7))."""

    __tablename__ = "live_answers"

    id: int | None = Field(default=None, primary_key=True)
    attempt_id: int = Field(foreign_key="attempts.id", unique=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    greeted_at: datetime = instant_field(index=True)
    agent_at: datetime | None = instant_field(nullable=True)
    abandoned: bool | None = Field(default=None, description="None until an agent joins or none will")
    identified: bool = Field(default=False, description="the identification message played")


class TransferPolicy(SQLModel, table=True):
    """A campaign's transfer settings; a campaign without a row uses the defaults."""

    __tablename__ = "transfer_policies"

    campaign_id: int = Field(foreign_key="campaigns.id", primary_key=True)
    wait_seconds: int = 45
    callback_delay_seconds: int = 3600
    updated_at: datetime = instant_field()
