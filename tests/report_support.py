"""Stored decisions for report tests: campaigns with owners, contacts, attempts and decisions."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlmodel import Session

from outbound.decisions import store_decision
from outbound.models import Attempt, Campaign, Contact

T0 = datetime(2026, 7, 15, 16, 0, tzinfo=timezone.utc)
PACK_VERSION = "2026.07.1"
PACK = json.dumps({"version": PACK_VERSION, "federal": {"hours": [8, 21]}})


def reason(code: str, detail: str = "") -> dict:
    return {"code": code, "rule": f"rule.{code}", "detail": detail or code}


def add_campaign(session: Session, name: str, owner_id: int | None) -> Campaign:
    campaign = Campaign(name=name, owner_id=owner_id, settings={}, created_at=T0, updated_at=T0)
    session.add(campaign)
    session.flush()
    return campaign


def add_decision(session: Session, campaign: Campaign | None, phone: str, verdict: str, reasons: list[dict],
                 *, at: datetime = T0, state: str = "NY", attempt_no: int = 1) -> str:
    attempt_id = None
    if campaign is not None:
        contact = session.query(Contact).filter_by(campaign_id=campaign.id, e164=phone).one_or_none()
        if contact is None:
            contact = Contact(campaign_id=campaign.id, e164=phone, phone_raw=phone, state=state,
                              states=state, created_at=at)
            session.add(contact)
            session.flush()
        attempt = Attempt(campaign_id=campaign.id, contact_id=contact.id, channel="voice", attempt_no=attempt_no,
                          status="blocked" if verdict == "block" else "pending", due_at=at, created_at=at,
                          updated_at=at)
        session.add(attempt)
        session.flush()
        attempt_id = attempt.id
    scenario = {"at": at.isoformat(), "channel": "voice", "purpose": "telemarketing",
                "contact": {"phone": phone, "state": state}}
    decision = {"verdict": verdict, "reasons": reasons, "next_allowed_at": None, "timezones": [],
                "states": [state], "rules_version": PACK_VERSION}
    return store_decision(session, scenario=scenario, decision=decision, rules_version=PACK_VERSION,
                          rule_pack_json=PACK, attempt_id=attempt_id, actor="worker-1", at=at).id
