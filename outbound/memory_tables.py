"""Tables of the conversation memory: every turn of every call, and every fact learned.

Rows are only ever added. A fact is read as "the latest of its kind" for a contact; a turn keeps
the TwiML that answered it, so a redelivered webhook gets the same answer without acting twice.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from consent.sqltypes import instant_field



class ConversationTurn(SQLModel, table=True):
    """One exchange of a call: what we said at a node, and what we heard back."""

    __tablename__ = "conversation_turns"
    __table_args__ = (UniqueConstraint("attempt_id", "turn_no", name="uq_conversation_turns_attempt_turn"),
                      Index("ix_conversation_turns_phone_at", "phone", "at"))

    id: int | None = Field(default=None, primary_key=True)
    attempt_id: int = Field(foreign_key="attempts.id", index=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    phone: str
    turn_no: int = Field(description="0: the answer; n: the reply to gather n")
    node: str | None = Field(default=None, description="the node the reply was heard at (or the first node)")
    heard: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    input: str | None = Field(default=None, description="speech | dtmf | none")
    confidence: float | None = None
    intent: str | None = None
    said: str = Field(default="", sa_column=Column(Text, nullable=False))
    action: str | None = None
    path: str = Field(default="", description="nodes passed, space-separated")
    twiml: str = Field(default="", sa_column=Column(Text, nullable=False))
    at: datetime = instant_field()


class ConversationFact(SQLModel, table=True):
    """Something learned about a contact (callback_requested_at, not_interested, ...)."""

    __tablename__ = "conversation_facts"
    __table_args__ = (Index("ix_conversation_facts_contact_kind", "contact_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contacts.id")
    phone: str = Field(index=True)
    campaign_id: int = Field(foreign_key="campaigns.id")
    attempt_id: int | None = Field(default=None, foreign_key="attempts.id")
    kind: str
    value: str = Field(sa_column=Column(Text, nullable=False))
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    at: datetime = instant_field()
