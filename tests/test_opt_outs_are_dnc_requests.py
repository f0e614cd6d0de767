"""An opt-out is also a do-not-call request (47 CFR 64.1200(d)): whichever way it comes (a texted
STOP or ALTO, a spoken "no me llamen", key 9, an agent's "do not call", the API), the number goes on
the internal list in the revocation's own transaction, with who, when and how. Taking it off
needs a compliance user and a reason, and is audited."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import Session

from api import database
from api.routes import consent as consent_routes
from api.routes import dnc as dnc_routes
from api.validation_errors import request_validation_error
from consent import dnc, records
from consent.tables import DncEntry, Revocation
from consent.types import Channel
from outbound import audit
from outbound.carrier_events import handle_webhook
from outbound.db import session_scope
from outbound.models import AuditEvent
from webhook_support import CALLER_ID, T0, OrderCheckingCarrier, add_attempt, add_campaign, at, message_sid

PHONE = "+12125550123"
NOW = datetime(2026, 7, 15, 16, 0, tzinfo=timezone.utc)


def internal_entries(engine, phone=PHONE) -> list[DncEntry]:
    """From a connection of its own: only what is committed."""
    with Session(engine) as session:
        return list(session.scalars(select(DncEntry).where(DncEntry.list_kind == "internal",
                                                           DncEntry.phone == phone)))


def actions(engine) -> list[str]:
    with Session(engine) as session:
        return [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def assert_listed(engine, *, via: str, actor: str, when: datetime, phone: str = PHONE) -> DncEntry:
    [entry] = internal_entries(engine, phone)
    with Session(engine) as session:
        revocation = session.get(Revocation, entry.revocation_id)
    assert revocation is not None and revocation.phone == phone and revocation.via == via
    assert (entry.via, entry.added_by, entry.added_at, entry.removed_at) == (via, actor, when, None)
    assert f"revocation#{revocation.id}" in entry.reason
    with Session(engine) as session:
        assert dnc.sources_listing(session, phone)["internal"] is True
    return entry


# --- the ledger: one transaction ------------------------------------------------------------------

def test_a_revocation_puts_the_number_on_the_internal_list_in_the_same_commit(engine, session):
    stored = records.revoke(session, "(212) 555-0123", {Channel.SMS}, "email", NOW - timedelta(hours=1),
                            actor="ann", at=NOW, audit=audit.append, note="asked by e-mail")
    entry = assert_listed(engine, via="email", actor="ann", when=NOW)
    assert entry.revocation_id == stored.row.id and "asked by e-mail" in entry.reason
    assert actions(engine) == ["consent.revoked", "dnc.internal.add"]


def test_the_revocation_and_its_dnc_entry_are_stored_together_or_not_at_all(engine, session):
    def failing_audit(session, *, action, **kwargs):
        if action == "dnc.internal.add":
            raise RuntimeError("disk full")
        return audit.append(session, action=action, **kwargs)

    with pytest.raises(RuntimeError):
        records.revoke(session, PHONE, {Channel.VOICE}, "api", NOW, actor="ann", at=NOW, audit=failing_audit)
    session.rollback()
    with Session(engine) as other:
        assert other.scalars(select(Revocation)).all() == []
    assert internal_entries(engine) == []


def test_a_second_opt_out_leaves_the_one_entry(engine, session):
    records.revoke(session, PHONE, {Channel.SMS}, "sms_stop", NOW, actor="carrier", at=NOW, audit=audit.append)
    records.revoke(session, PHONE, {Channel.VOICE}, "spoken", NOW + timedelta(minutes=5), actor="carrier",
                   at=NOW + timedelta(minutes=5), audit=audit.append)
    assert len(internal_entries(engine)) == 1
    assert actions(engine) == ["consent.revoked", "dnc.internal.add", "consent.revoked"]


# --- each path an opt-out comes by ------------------------------------------------------------------

@pytest.mark.parametrize("body", ["STOP", "ALTO", "no me llamen", "Cancelar"])
def test_a_texted_opt_out_lands_on_the_internal_list_before_the_reply(engine, session, body):
    campaign = add_campaign(session, "Acme Solar", channel="sms")
    add_attempt(session, campaign, PHONE, channel="sms", status="completed", carrier_status="delivered")
    carrier = OrderCheckingCarrier(engine)
    params = {"MessageSid": message_sid(), "From": PHONE, "To": CALLER_ID, "Body": body}
    result = handle_webhook(session, "sms-inbound", params, at(60), adapter=carrier)
    session.commit()
    assert result.action == "revoked" and len(carrier.sent) == 1
    assert_listed(engine, via="sms_stop", actor="carrier", when=at(60))
    done = actions(engine)
    assert done.index("consent.revoked") < done.index("dnc.internal.add") < done.index("sms.reply_sent")


# The voice paths go through the signed webhooks (test_voice_webhooks' fixtures).
from test_voice_webhooks import PHONE as CALL_PHONE  # noqa: E402
from test_voice_webhooks import answer, client, configured, db, make_attempt, post, reply  # noqa: E402,F401


@pytest.mark.parametrize("said,via", [({"SpeechResult": "No me llamen más", "Confidence": "0.9"}, "spoken"),
                                      ({"SpeechResult": "alto", "Confidence": "0.9"}, "spoken"),
                                      ({"Digits": "9"}, "keypress")])
def test_an_opt_out_during_a_call_lands_on_the_internal_list(client, db, configured, said, via):
    attempt = make_attempt(db)
    response = reply(client, attempt, answer(client, attempt), **said)
    assert response.status_code == 200, response.text
    assert "You will not get more calls from Sunrise Solar" in response.text
    assert_listed(configured, via=via, actor="carrier", when=T0, phone=CALL_PHONE)


def test_key_9_on_a_call_to_our_number_lands_on_the_internal_list(client, db, configured):
    add_campaign(db, settings={"conversation": {"seller_name": "Sunrise Solar", "callback_number": "+18005550100"}})
    db.commit()
    choice = post(client, "/v1/twilio/inbound-call/choice",
                  {"CallSid": "CA1", "From": CALL_PHONE, "To": "+18005550100", "Digits": "9"})
    assert choice.status_code == 200
    assert_listed(configured, via="keypress", actor="inbound-call", when=T0, phone=CALL_PHONE)


def test_an_agents_do_not_call_disposition_lands_on_the_internal_list(engine):
    from outbound import transfers
    from outbound.agent_tables import Transfer
    from test_transfers import World

    world = World(engine)
    attempt = world.answered_attempt()
    world.transfer(attempt.id)
    world.run_until(world.now + timedelta(seconds=3))             # the agent has joined
    with Session(engine) as session:
        transfer = session.execute(select(Transfer)).scalar_one()
        transfers.set_disposition(session, transfer, "do_not_call", "said never call again", actor="agent0",
                                  at=world.now, available=False)
        session.commit()
    entry = assert_listed(engine, via="agent", actor="agent0", when=world.now)
    assert "said never call again" in entry.reason


# --- the API: revoke, and removal by compliance only, with a reason ---------------------------------

@pytest.fixture
def api(engine, api_users, outbound_env):
    def session_override():
        with session_scope(engine) as session:
            yield session

    app = FastAPI()
    app.include_router(consent_routes.router)
    app.include_router(dnc_routes.router)
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.dependency_overrides[database.get_api_session] = session_override
    app.dependency_overrides[database.get_api_now] = lambda: NOW
    api_users.install(app)
    with TestClient(app) as client:
        yield client


def test_an_api_revocation_lands_on_the_internal_list(api, engine, api_users):
    response = api.post("/v1/revocations", json={"phone": "2125550123", "via": "api", "channels": ["sms"],
                                                  "received_at": "2026-07-15T15:59:00Z"},
                        headers=api_users.headers("compliance"))
    assert response.status_code == 201, response.text
    entry = assert_listed(engine, via="api", actor="compliance", when=NOW)
    number = api.get(f"/v1/dnc/numbers/{PHONE}", headers=api_users.headers("compliance"))
    assert number.status_code == 200, number.text
    assert number.json()["internal"] is True
    assert number.json()["internal_entry"] == {
        "id": entry.id, "added_at": "2026-07-15T16:00:00Z", "added_by": "compliance", "via": "api",
        "reason": entry.reason, "revocation_id": entry.revocation_id}


@pytest.fixture
def listed(api, engine, api_users):
    response = api.post("/v1/revocations", json={"phone": PHONE, "via": "spoken", "received_at": "2026-07-15T15:59:00Z"},
                        headers=api_users.headers("compliance"))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("role", ["manager", "agent", "admin"])
def test_only_a_compliance_user_takes_a_number_off_the_list(api, engine, api_users, listed, role):
    response = api.post("/v1/dnc/internal/remove", json={"phone": PHONE, "reason": "consent re-given in writing"},
                        headers=api_users.headers(role))
    assert response.status_code == 403, response.text
    [entry] = internal_entries(engine)
    assert entry.removed_at is None and "dnc.internal.remove" not in actions(engine)


@pytest.mark.parametrize("body", [{"phone": PHONE}, {"phone": PHONE, "reason": ""}, {"phone": PHONE, "reason": "   "}])
def test_taking_a_number_off_the_list_needs_a_reason(api, engine, api_users, listed, body):
    response = api.post("/v1/dnc/internal/remove", json=body, headers=api_users.headers("compliance"))
    assert response.status_code == 422, response.text
    [entry] = internal_entries(engine)
    assert entry.removed_at is None and "dnc.internal.remove" not in actions(engine)


def test_a_compliance_user_with_a_reason_takes_it_off_and_it_is_audited(api, engine, api_users, listed):
    response = api.post("/v1/dnc/internal/remove", json={"phone": PHONE, "reason": "consent re-given in writing"},
                        headers=api_users.headers("compliance"))
    assert response.status_code == 200, response.text
    [entry] = internal_entries(engine)
    assert (entry.removed_at, entry.removed_by, entry.removal_reason) == (NOW, "compliance",
                                                                           "consent re-given in writing")
    with Session(engine) as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "dnc.internal.remove")).all()
        assert (event.actor, event.subject) == ("compliance", PHONE)
        assert "consent re-given in writing" in event.payload
        assert dnc.sources_listing(session, PHONE)["internal"] is False
