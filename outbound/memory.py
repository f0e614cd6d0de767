"""Conversation memory: store turns and facts, read a contact's memory, move a callback's due time.

Writes happen in the caller's transaction; facts are audited (actor `carrier` when a caller said
it on the phone). Reading a transcript is audited too (`conversation.read`, with the reader).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlmodel import Session

from outbound import audit
from outbound.db import insert_ignoring_duplicates
from outbound.memory_tables import ConversationFact, ConversationTurn
from outbound.models import Attempt, Campaign, Contact
from outbound.scripts.model import FactKind, Reply

ACTOR_CALLER = "carrier"


@dataclass(frozen=True)
class TurnRecord:
    turn_no: int
    node: str | None
    reply: Reply | None
    intent: str | None
    said: str
    action: str | None
    path: tuple[str, ...]
    twiml: str


def stored_turn(session: Session, attempt_id: int, turn_no: int) -> ConversationTurn | None:
    return session.execute(select(ConversationTurn).where(ConversationTurn.attempt_id == attempt_id,
                                                          ConversationTurn.turn_no == turn_no)).scalar_one_or_none()


def record_turn(session: Session, attempt: Attempt, contact: Contact, turn: TurnRecord, at: datetime) -> bool:
    """Store one turn; False when that turn of that call was stored already (a redelivery)."""
    reply = turn.reply
    return insert_ignoring_duplicates(session, ConversationTurn.__table__, {
        "attempt_id": attempt.id, "contact_id": contact.id, "phone": contact.e164, "turn_no": turn.turn_no,
        "node": turn.node, "heard": reply.heard() if reply else None,
        "input": None if reply is None else ("dtmf" if reply.digits else "speech" if reply.speech else "none"),
        "confidence": reply.confidence if reply else None, "intent": turn.intent, "said": turn.said,
        "action": turn.action, "path": " ".join(turn.path), "twiml": turn.twiml, "at": at})


def learn(session: Session, *, contact: Contact, attempt: Attempt | None, kind: str, value: str, at: datetime,
          detail: str | None = None, actor: str = ACTOR_CALLER) -> ConversationFact:
    fact = ConversationFact(contact_id=contact.id, phone=contact.e164, campaign_id=contact.campaign_id,
                            attempt_id=attempt.id if attempt else None, kind=kind, value=value,
                            detail=detail, at=at)
    session.add(fact)
    session.flush()
    audit.append(session, actor=actor, action="conversation.fact_learned", subject=contact.e164, at=at,
                 payload={"fact_id": fact.id, "kind": kind, "value": value, "detail": detail,
                          "attempt_id": fact.attempt_id, "campaign_id": contact.campaign_id})
    return fact


def memory_fact_exists(session: Session, attempt_id: int, kind: str) -> bool:
    return session.execute(select(ConversationFact.id).where(ConversationFact.attempt_id == attempt_id,
                                                             ConversationFact.kind == kind).limit(1)).first() is not None


def memory_view(session: Session, contact_id: int) -> dict[str, str]:
    """The latest value of each fact kind for the contact; `callback_time` is how to say the
    latest callback request ("after 5 PM")."""
    facts = session.execute(select(ConversationFact).where(ConversationFact.contact_id == contact_id)
                            .order_by(ConversationFact.at, ConversationFact.id)).scalars()
    view: dict[str, str] = {}
    for fact in facts:
        view[fact.kind] = fact.value
        if fact.kind == FactKind.CALLBACK_REQUESTED_AT.value and fact.detail:
            view["callback_time"] = fact.detail
    return view


def schedule_callback(session: Session, attempt: Attempt, due_at: datetime, *, at: datetime,
                      heard: str) -> Attempt:
    """The contact's next attempt in this campaign becomes due at `due_at`: a pending attempt is
    moved there, or the next one is created. Dispatch still takes it through the gate then."""
    pending = session.execute(select(Attempt).where(
        Attempt.campaign_id == attempt.campaign_id, Attempt.contact_id == attempt.contact_id,
        Attempt.status == "pending", Attempt.id != attempt.id).order_by(Attempt.attempt_no)).scalars().first()
    if pending is not None:
        session.execute(update(Attempt).where(Attempt.id == pending.id, Attempt.status == "pending")
                        .values(due_at=due_at, updated_at=at))
        target = pending
    else:
        number = session.execute(select(Attempt.attempt_no).where(
            Attempt.campaign_id == attempt.campaign_id, Attempt.contact_id == attempt.contact_id)
            .order_by(Attempt.attempt_no.desc()).limit(1)).scalar_one() + 1
        insert_ignoring_duplicates(session, Attempt.__table__, {
            "campaign_id": attempt.campaign_id, "contact_id": attempt.contact_id, "channel": attempt.channel,
            "status": "pending", "attempt_no": number, "due_at": due_at, "created_at": at, "updated_at": at})
        target = session.execute(select(Attempt).where(
            Attempt.campaign_id == attempt.campaign_id, Attempt.contact_id == attempt.contact_id,
            Attempt.attempt_no == number)).scalar_one()
    audit.append(session, actor=ACTOR_CALLER, action="attempt.callback_scheduled", subject=f"attempt:{target.id}",
                 at=at, payload={"previous_attempt": attempt.id, "due_at": due_at, "heard": heard[:300],
                                 "note": "due time only: the gate decides at dispatch"})
    return target


# --- reading ---------------------------------------------------------------------------------------

def conversation_of(session: Session, phone: str, *, owner_id: int | None = None) -> dict[str, Any]:
    """Every turn and fact stored for `phone` (E.164), oldest first: across every campaign, or
    (`owner_id`) only those of the campaigns that user owns. Scoped by campaign, not by phone: a
    manager who imports another campaign's number into their own reads what their own calls
    heard, never what another campaign's did."""
    turns = (select(ConversationTurn, Attempt.campaign_id)
             .join(Attempt, Attempt.id == ConversationTurn.attempt_id)
             .where(ConversationTurn.phone == phone)
             .order_by(ConversationTurn.at, ConversationTurn.attempt_id, ConversationTurn.turn_no))
    facts = (select(ConversationFact).where(ConversationFact.phone == phone)
             .order_by(ConversationFact.at, ConversationFact.id))
    campaigns = select(Campaign.id, Campaign.name)
    if owner_id is not None:
        owned = select(Campaign.id).where(Campaign.owner_id == owner_id)
        turns = turns.where(Attempt.campaign_id.in_(owned))
        facts = facts.where(ConversationFact.campaign_id.in_(owned))
        campaigns = campaigns.where(Campaign.owner_id == owner_id)
    turns = session.execute(turns).all()
    facts = session.execute(facts).scalars().all()
    names = dict(session.execute(campaigns).all())
    return {
        "phone": phone,
        "turns": [{"attempt_id": turn.attempt_id, "campaign": names.get(campaign_id), "turn": turn.turn_no,
                   "at": audit.iso_utc(turn.at), "node": turn.node, "heard": turn.heard, "input": turn.input,
                   "confidence": turn.confidence, "intent": turn.intent, "said": turn.said, "action": turn.action,
                   "path": turn.path.split()} for turn, campaign_id in turns],
        "facts": [{"kind": fact.kind, "value": fact.value, "detail": fact.detail, "at": audit.iso_utc(fact.at),
                   "campaign": names.get(fact.campaign_id), "attempt_id": fact.attempt_id} for fact in facts],
    }


def read_conversation(session: Session, phone: str, *, actor: str, at: datetime,
                      owner_id: int | None = None) -> dict[str, Any]:
    """`conversation_of`, audited as read by `actor` (transcripts are personal data)."""
    conversation = conversation_of(session, phone, owner_id=owner_id)
    audit.append(session, actor=actor, action="conversation.read", subject=phone, at=at,
                 payload={"turns": len(conversation["turns"]), "facts": len(conversation["facts"])})
    return conversation
