"""REST routes of the consent ledger: POST consent, revocations, business relationships; GET history."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import select
from sqlmodel import Session

from consent.tables import ConsentRecord, Revocation
from outbound.models import AuditEvent
from consent_support import consent_api_client

NOW = datetime(2026, 7, 15, 16, 0, tzinfo=timezone.utc)
CONSENT = {"phone": "(212) 555-0123", "kind": "written", "channels": ["voice", "sms"],
           "purposes": ["telemarketing"], "seller": "Acme", "granted_at": "2026-01-01T00:00:00Z",
           "evidence": {"certificate_id": "CERT-1", "ip": "203.0.113.9",
                        "page_url": "https://example.com/signup"}}


@pytest.fixture
def client(engine, api_users):
    yield from consent_api_client(engine, api_users, NOW)


def audit_actions(engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return [(e.action, e.actor) for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))
                if not e.action.startswith(("user.", "token."))]       # the fixture's users


def test_the_consent_router_is_mounted_by_the_app():
    from api.app import ROUTER_MODULES

    assert "api.routes.consent" in ROUTER_MODULES


def test_post_consent_stores_it_with_the_authenticated_user_as_actor(client, engine):
    response = client.post("/v1/consent", json=CONSENT, headers={"X-Actor": "crm-sync"})   # ignored

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["phone"] == "+12125550123" and body["recorded_by"] == "compliance"
    assert body["evidence"] == {"certificate_id": "CERT-1", "ip": "203.0.113.9",
                                "page_url": "https://example.com/signup"}
    assert audit_actions(engine) == [("consent.granted", "compliance")]


def test_posting_the_same_consent_again_answers_200_with_the_stored_record(client, engine):
    first = client.post("/v1/consent", json=CONSENT).json()
    again = client.post("/v1/consent", json=CONSENT)

    assert again.status_code == 200 and again.json()["id"] == first["id"]
    with Session(engine) as session:
        assert len(session.scalars(select(ConsentRecord)).all()) == 1


def test_a_newer_consent_supersedes_it(client, engine):
    first = client.post("/v1/consent", json=CONSENT).json()
    second = client.post("/v1/consent", json={**CONSENT, "granted_at": "2026-03-01T00:00:00Z"}).json()

    assert second["supersedes"] == f"consent#{first['id']}"
    assert audit_actions(engine) == [("consent.granted", "compliance"), ("consent.granted", "compliance"),
                                     ("consent.superseded", "compliance")]


@pytest.mark.parametrize("change,field,message", [
    ({"phone": "555-0123"}, "phone", "not a valid NANP phone number"),
    ({"kind": "verbal"}, "kind", "Input should be 'written' or 'express'"),
    ({"channels": []}, "channels", "name at least one"),
    ({"granted_at": "2026-01-01T00:00:00"}, "granted_at", "has no time zone"),
    ({"granted_at": 1767225600}, "granted_at", "give an ISO 8601 instant as a string"),
    ({"expiry": "2027-01-01T00:00:00Z"}, "expiry", "Extra inputs are not permitted"),
    ({"evidence": {"ip": "not-an-ip"}}, "ip", "not an IPv4 or IPv6 address"),
])
def test_post_consent_answers_422_naming_the_field(client, engine, change, field, message):
    response = client.post("/v1/consent", json={**CONSENT, **change})

    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"][-1] == field and message in problem["msg"]
    assert audit_actions(engine) == []


def test_text_no_database_can_store_is_a_422_not_a_500(client, engine):
    # A JSON "\ud800" escape decodes to a lone surrogate: neither PostgreSQL nor a UTF-8 answer
    # can hold it.
    body = json.dumps(CONSENT)[:-1] + ', "brand": "\\ud800"}'
    response = client.post("/v1/consent", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert "brand: not valid UTF-8 text" in response.json()["detail"][0]["msg"]
    assert audit_actions(engine) == []


def test_post_revocation_is_committed_and_defaults_to_every_channel(client, engine):
    response = client.post("/v1/revocations",
                           json={"phone": "2125550123", "via": "spoken", "received_at": "2026-07-15T15:59:00Z"})

    assert response.status_code == 201, response.text
    assert response.json()["channels"] == ["voice", "sms"]
    with Session(engine) as session:
        [revocation] = session.scalars(select(Revocation)).all()
        assert (revocation.via, revocation.recorded_by) == ("spoken", "compliance")
    # An opt-out is also a do-not-call request: the number goes on the internal list with it.
    assert audit_actions(engine) == [("consent.revoked", "compliance"), ("dnc.internal.add", "compliance")]


def test_post_revocation_refuses_an_unknown_via(client):
    response = client.post("/v1/revocations", json={"phone": "2125550123", "via": "fax",
                                                     "received_at": "2026-07-15T15:59:00Z"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "via"]


def test_post_business_relationship(client, engine):
    response = client.post("/v1/business-relationships",
                           json={"phone": "2125550123", "seller": "Acme", "last_inquiry_at": "2026-06-01T00:00:00Z"})
    assert response.status_code == 201, response.text
    assert (response.json()["last_inquiry_at"], response.json()["seller"]) == ("2026-06-01T00:00:00Z", "Acme")

    missing = client.post("/v1/business-relationships", json={"phone": "2125550123", "seller": "Acme"})
    assert missing.status_code == 422
    assert "give last_transaction_at, last_inquiry_at or both" in json.dumps(missing.json())


def test_get_consent_gives_the_history_in_time_order_and_what_the_gate_relies_on(client):
    client.post("/v1/consent", json=CONSENT)
    client.post("/v1/revocations", json={"phone": "2125550123", "channels": ["sms"], "via": "sms_stop",
                                         "received_at": "2026-02-01T00:00:00Z"})

    response = client.get("/v1/consent/%2B12125550123")

    assert response.status_code == 200
    view = response.json()
    assert view["phone"] == "+12125550123" and view["at"] == "2026-07-15T16:00:00Z"
    assert [(e["at"], e["event"]) for e in view["history"]] == [
        ("2026-01-01T00:00:00Z", "consent_granted"), ("2026-02-01T00:00:00Z", "revocation")]
    relied = {(r["channel"], r["purpose"]): r for r in view["relied_on"]}
    assert relied["voice", "telemarketing"]["evidence"] == "consent#1 cert=CERT-1"
    assert relied["sms", "telemarketing"]["evidence"] is None
    assert "revoked for sms at 2026-02-01T00:00:00Z via sms_stop" in relied["sms", "telemarketing"]["reason"]


def test_get_consent_filters_by_channel_and_purpose(client):
    response = client.get("/v1/consent/2125550123", params={"channel": "sms", "purpose": "informational"})
    assert response.status_code == 200
    assert [(r["channel"], r["purpose"], r["need"]) for r in response.json()["relied_on"]] == [
        ("sms", "informational", "express")]
    assert response.json()["history"] == []


def test_get_consent_of_an_invalid_phone_is_422_with_the_reason(client):
    response = client.get("/v1/consent/12345")
    assert response.status_code == 422
    assert response.json() == {"detail": "not a valid NANP phone number: '12345'"}
