"""Helpers for page tests: users per role, a signed-in TestClient, the CSRF token of its session."""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.auth import CSRF_HEADER, SESSION_COOKIE
from outbound import transfers
from outbound.db import session_scope
from outbound.models import Attempt, Campaign, Contact
from outbound.users import add_user, find_user, login

PASSWORD = "correct horse battery staple"
XSS = "<script>alert(1)</script>"


@dataclass
class SignedIn:
    client: TestClient
    user_id: int
    name: str
    csrf: str

    def post(self, url: str, **kwargs):
        """A write as htmx sends it: the session's CSRF token in its header."""
        headers = {CSRF_HEADER: self.csrf, **kwargs.pop("headers", {})}
        return self.client.post(url, headers=headers, **kwargs)


def ensure_user(engine: Engine, name: str, role: str) -> int:
    at = datetime.now(timezone.utc)
    with session_scope(engine) as session:
        user = find_user(session, name) or add_user(session, name, role, password=PASSWORD, actor="test", at=at)
        return user.id


def sign_in(client: TestClient, engine: Engine, name: str, role: str) -> SignedIn:
    user_id = ensure_user(engine, name, role)
    with session_scope(engine) as session:
        session_id, user = login(session, name, PASSWORD, at=datetime.now(timezone.utc))
    client.cookies.set(SESSION_COOKIE, session_id)
    return SignedIn(client=client, user_id=user_id, name=name, csrf=user.csrf_token)


def field_error(html: str, field: str) -> str | None:
    """The message shown next to a form field, or None."""
    match = re.search(rf'<span class="field-error" id="e-{field}">(.*?)</span>', html, re.S)
    return match.group(1) if match else None


_CAMPAIGN_NUMBERS = itertools.count(1)


def offer_transfer(engine: Engine, *, first_name: str = XSS) -> int:
    """A live answer (a caller named `first_name`) warm-transferred: offered to the free agent."""
    at = datetime.now(timezone.utc)
    with session_scope(engine) as session:
        campaign = Campaign(name=f"sunrise-solar-live-{next(_CAMPAIGN_NUMBERS)}", status="running", channel="voice",
                            purpose="telemarketing", voice="live", automated=False, caller_id="+12125550100",
                            settings={}, created_at=at, updated_at=at)
        session.add(campaign)
        session.flush()
        contact = Contact(campaign_id=campaign.id, e164="+12125550188", phone_raw="x", first_name=first_name,
                          last_name="Doe", state="NY", created_at=at)
        session.add(contact)
        session.flush()
        attempt = Attempt(campaign_id=campaign.id, contact_id=contact.id, channel="voice", status="dialing",
                          carrier_id=f"CA{int(at.timestamp() * 1000)}", due_at=at, created_at=at, updated_at=at)
        session.add(attempt)
        session.flush()
        transfers.begin_transfer(session, attempt_id=attempt.id, at=at, public_url="http://localhost")
        return transfers.open_transfer_for(session, attempt.id).id
