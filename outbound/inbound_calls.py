"""Calls to our numbers: the callback number every prerecorded call and voicemail gives.

Whoever calls back hears who we are and can press 9 to stop every call and text from us; the
opt-out is stored (and committed) before the confirmation is spoken, like any other. Which seller
answers is found from the number called: the campaign that calls from it, or that gives it as its
callback number. Nothing else happens on these calls; a caller who presses nothing hears goodbye.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from consent import records
from consent.ledger_io import RevocationVia
from consent.records import LedgerError
from consent.types import Channel
from outbound import audit
from outbound.campaigns import campaign_settings
from outbound.models import Campaign

ACTOR = "inbound-call"
OPT_OUT_DIGIT = "9"


def seller_for_number(session: Session, called: str) -> str | None:
    """The seller a call to `called` reaches: the newest campaign calling from, or giving, it."""
    # A handful of campaigns: read them all rather than query inside the settings JSON, which
    # SQLite and PostgreSQL spell differently.
    for campaign in session.execute(select(Campaign).order_by(Campaign.id.desc())).scalars():
        conversation = campaign_settings(campaign).conversation
        if called in (campaign.caller_id, conversation.callback_number):
            return conversation.seller_name or campaign.name
    return None


def opt_out_by_keypress(session: Session, caller: str, at: datetime, *, call_sid: str, seller: str | None,
                        received_at: datetime | None = None) -> int:
    """Store the caller's opt-out from every call and text, committed; returns its id. Raises
    LedgerError when the caller's number cannot be read (a withheld or foreign number).
    `received_at` (default `at`): when it was pressed, earlier when it waited in the journal."""
    stored = records.revoke(session, caller, {Channel.VOICE, Channel.SMS}, RevocationVia.KEYPRESS, received_at or at,
                            actor=ACTOR, at=at, audit=audit.append,
                            note=f"inbound call {call_sid}: pressed {OPT_OUT_DIGIT}"
                                 + (f" (calling {seller})" if seller else ""))
    return stored.row.id


__all__ = ["seller_for_number", "opt_out_by_keypress", "LedgerError", "OPT_OUT_DIGIT"]
