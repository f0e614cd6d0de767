"""START after STOP tells the truth.

An SMS STOP also puts the number on the internal do-not-call list, which only a compliance user,
with a reason, lifts. A later START used to reply "you're resubscribed" while the internal list
blocked every text. Now, while the number is listed, START records its re-opt-in and a request
for compliance (audit event, shown with the internal entry in the DNC view and the why page),
replies that texts resume once the request is reviewed, and leaves the entry in place.
"""
from __future__ import annotations

import json
from datetime import timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import Session

from consent import dnc, records
from consent.ledger_io import ConsentIn
from consent.types import Channel, ConsentNeed, Purpose
from outbound import audit
from outbound.carrier_events import handle_webhook
from outbound.models import AuditEvent
from webhook_support import CALLER_ID, T0, OrderCheckingCarrier, add_attempt, add_campaign, at, message_sid

PHONE = "+12125550123"


def text(session, body, carrier, *, when, sid=None):
    params = {"MessageSid": sid or message_sid(), "From": PHONE, "To": CALLER_ID, "Body": body}
    return handle_webhook(session, "sms-inbound", params, when, adapter=carrier)


def opted_out_customer(session, engine) -> OrderCheckingCarrier:
    """An SMS campaign's customer with written SMS consent who then texted STOP."""
    campaign = add_campaign(session, "Acme Solar", channel="sms")
    add_attempt(session, campaign, PHONE, channel="sms", status="completed", carrier_status="delivered")
    records.add_consent(session, ConsentIn(
        phone=PHONE, kind="written", channels=["voice", "sms"], purposes=["telemarketing"], seller="Acme Solar",
        brand="Acme Solar", granted_at=T0.replace(month=1), evidence={"source": "web form"}),
        actor="test", at=T0.replace(month=1), audit=audit.append)
    session.commit()
    carrier = OrderCheckingCarrier(engine)
    text(session, "STOP", carrier, when=at(60))
    assert dnc.sources_listing(session, PHONE)["internal"] is True
    return carrier


def sms_consent_in_force(session, when) -> bool:
    facts = records.facts_for(session, PHONE, when)
    return records.relied_on(facts.consents, facts.revocations, Channel.SMS, Purpose.TELEMARKETING,
                             ConsentNeed.WRITTEN, when).grant is not None


def requests(session) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == "sms.resubscribe_requested")))


def test_start_while_on_the_internal_list_is_a_request_and_the_reply_says_so(session, engine):
    carrier = opted_out_customer(session, engine)
    sid = message_sid()

    result = text(session, "START", carrier, when=at(120), sid=sid)

    reply = carrier.sent[-1].body
    assert "resubscribed" not in reply and "resume only once our team has reviewed it" in reply
    assert result.action == "resubscribe_requested" and "entry#" in result.detail
    # The entry stays: START cannot lift a do-not-call request by itself.
    entry = dnc.internal_entry(session, PHONE)
    assert entry is not None and dnc.sources_listing(session, PHONE)["internal"] is True
    [event] = requests(session)
    payload = json.loads(event.payload)
    assert (event.subject, payload["message_sid"], payload["internal_entry_id"]) == (PHONE, sid, entry["id"])
    assert payload["outcome"] == "resubscribed" and "re-opt-in consent#" in payload["detail"]
    # The re-opt-in is on file, ready for when compliance lifts the entry.
    assert sms_consent_in_force(session, at(121))
    assert audit.verify(session).ok


def test_start_for_an_opted_out_number_without_consent_records_no_request(session, engine):
    campaign = add_campaign(session, "Acme Solar", channel="sms")
    add_attempt(session, campaign, PHONE, channel="sms", status="completed", carrier_status="delivered")
    carrier = OrderCheckingCarrier(engine, expect_revocation=False)
    text(session, "STOP", carrier, when=at(60))
    result = text(session, "START", carrier, when=at(120))
    assert result.action == "no_consent" and requests(session) == []
    assert "can't resubscribe you by text without your consent" in carrier.sent[-1].body


def test_once_compliance_lifts_the_entry_start_resubscribes(session, engine):
    carrier = opted_out_customer(session, engine)
    dnc.remove_internal(session, PHONE, reason="customer asked by phone to get texts again", actor="carol",
                        at=at(90), audit=audit.append)
    session.commit()

    result = text(session, "START", carrier, when=at(120))

    assert result.action == "resubscribed" and "resubscribed" in carrier.sent[-1].body
    assert requests(session) == [] and sms_consent_in_force(session, at(121))


def test_the_compliance_dnc_view_shows_the_request_with_the_entry(env_api_users):
    from api.app import create_app
    from outbound.db import get_engine

    engine = get_engine()
    with Session(engine) as session:
        carrier = opted_out_customer(session, engine)
        before = TestClient(create_app()).get(f"/v1/dnc/numbers/{PHONE}",
                                              headers=env_api_users.headers("compliance")).json()
        text(session, "START", carrier, when=at(120))
    assert "resubscribe_requested_at" not in before["internal_entry"]       # only once one came

    with TestClient(create_app()) as client:
        view = client.get(f"/v1/dnc/numbers/{PHONE}", headers=env_api_users.headers("compliance")).json()
    entry = view["internal_entry"]
    when = at(120).astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    assert view["internal"] is True and entry["via"] == "sms_stop"
    assert entry["resubscribe_requested_at"] == when
    assert entry["detail"].startswith(f"resubscribe requested at {when} by text SM")
    assert "until a compliance user removes this entry" in entry["detail"]

    from pages_support import sign_in
    with TestClient(create_app()) as client:
        page = sign_in(client, engine, "carol", "compliance").client.get(f"/compliance/why?phone={PHONE}").text
    cell = page.split('<td id="internal-entry">', 1)[1].split("</td>", 1)[0]
    assert "via sms_stop" in cell and f"resubscribe requested at {when}" in cell


@pytest.mark.parametrize("body", ["START", "unstop", "Yes"])
def test_every_start_word_is_held_for_review(session, engine, body):
    carrier = opted_out_customer(session, engine)
    assert text(session, body, carrier, when=at(120)).action == "resubscribe_requested"
