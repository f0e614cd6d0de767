"""Calls to our callback number: the menu names the seller, 9 stores the opt-out before saying so."""
from __future__ import annotations

from sqlalchemy import select

from consent.tables import Revocation
from outbound.models import AuditEvent
from test_voice_webhooks import PUBLIC_URL, client, configured, db, post  # noqa: F401 (fixtures)
from webhook_support import add_campaign

CALLER = "+13105550123"
OUR_NUMBER = "+18005550100"


def test_a_caller_hears_the_seller_and_pressing_9_stores_the_opt_out_first(client, db):
    add_campaign(db, settings={"conversation": {"seller_name": "Sunrise Solar", "callback_number": OUR_NUMBER}})
    db.commit()
    menu = post(client, "/v1/twilio/inbound-call", {"CallSid": "CA1", "From": CALLER, "To": OUR_NUMBER})
    assert menu.status_code == 200
    assert "You have reached Sunrise Solar." in menu.text and "press 9" in menu.text
    assert f'action="{PUBLIC_URL}/v1/twilio/inbound-call/choice"' in menu.text

    choice = post(client, "/v1/twilio/inbound-call/choice",
                  {"CallSid": "CA1", "From": CALLER, "To": OUR_NUMBER, "Digits": "9"})
    assert choice.status_code == 200 and "Sunrise Solar will not call or text this number again" in choice.text
    db.expire_all()
    revocation = db.execute(select(Revocation).where(Revocation.phone == CALLER)).scalar_one()
    assert revocation.via == "keypress" and set(revocation.channels.split()) == {"voice", "sms"}
    assert db.execute(select(AuditEvent).where(AuditEvent.actor == "inbound-call")).first() is not None


def test_no_key_or_a_hidden_number_changes_nothing_and_the_caller_is_told(client, db):
    nothing = post(client, "/v1/twilio/inbound-call/choice", {"CallSid": "CA2", "From": CALLER, "To": "+1999"})
    hidden = post(client, "/v1/twilio/inbound-call/choice",
                  {"CallSid": "CA3", "From": "anonymous", "To": OUR_NUMBER, "Digits": "9"})
    assert "No change was made" in nothing.text and "could not identify the number" in hidden.text
    assert db.execute(select(Revocation)).first() is None


def test_an_unsigned_inbound_call_is_refused(client):
    response = post(client, "/v1/twilio/inbound-call", {"CallSid": "CA4", "From": CALLER, "To": OUR_NUMBER},
                    header=False)
    assert response.status_code == 403
