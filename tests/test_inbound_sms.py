"""Inbound texts: an opt-out is committed before its one confirmation; HELP; START; free text."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from consent import records
from consent.ledger_io import ConsentIn, RevocationVia
from consent.tables import ConsentRecord, Revocation
from consent.types import Channel, ConsentNeed, Purpose
from outbound import audit
from outbound.carrier_events import InvalidEvent, handle_webhook
from outbound.models import AuditEvent, CarrierEvent
from outbound.sms_keywords import Intent, classify, normalise, opt_out_confirmation
from telephony.adapter import CarrierError
from webhook_support import (
    CALLER_ID, T0, OrderCheckingCarrier, add_attempt, add_campaign, at, audit_actions, count, message_sid,
)

PHONE = "+12125550123"


@pytest.fixture
def carrier(engine):
    return OrderCheckingCarrier(engine)


@pytest.fixture
def campaign(session):
    campaign = add_campaign(session, "Acme Solar", channel="sms")
    add_attempt(session, campaign, PHONE, channel="sms", status="completed", carrier_status="delivered")
    return campaign


def text(session, body, carrier, *, sid=None, when=None, phone=PHONE):
    params = {"MessageSid": sid or message_sid(), "From": phone, "To": CALLER_ID, "Body": body}
    return handle_webhook(session, "sms-inbound", params, when or at(60), adapter=carrier)


def grant_sms_consent(session, *, channels=("voice", "sms"), kind="written", expires_at=None):
    consent = ConsentIn(phone=PHONE, kind=kind, channels=list(channels), purposes=["telemarketing"],
                        seller="Acme Solar", brand="Acme Solar", granted_at=T0.replace(month=1), expires_at=expires_at,
                        evidence={"source": "web form"})
    record = records.add_consent(session, consent, actor="test", at=T0.replace(month=1), audit=audit.append).row
    session.commit()
    return record


def sms_reliance(session, when):
    facts = records.facts_for(session, PHONE, when)
    return records.relied_on(facts.consents, facts.revocations, Channel.SMS, Purpose.TELEMARKETING,
                             ConsentNeed.WRITTEN, when)


# --- the classifier ---------------------------------------------------------------------------

@pytest.mark.parametrize("body, normalised", [
    ("  STOP  ", "stop"), ("Opt-Out!", "optout"), ("Stop   ALL", "stop all"), ("Don’t text me", "dont text me"),
    ("ＳＴＯＰ", "stop"), ("stop.please", "stop please"),
])
def test_normalise_strips_casefolds_collapses_and_drops_punctuation(body, normalised):
    assert normalise(body) == normalised


@pytest.mark.parametrize("body, intent", [
    *[(keyword, Intent.OPT_OUT) for keyword in ("STOP", "stopall", "STOP ALL", "Unsubscribe", "cancel", "END",
                                                "quit", "REVOKE", "opt out", "OPTOUT", "opt-out", "Stop.")],
    ("HELP", Intent.HELP), ("info", Intent.HELP), ("START", Intent.START), ("unstop", Intent.START),
    ("Yes", Intent.START),
    ("please don't text me anymore", Intent.OPT_OUT), ("remove me from your list", Intent.OPT_OUT),
    ("stop texting", Intent.OPT_OUT), ("Take me off this", Intent.OPT_OUT), ("no more messages", Intent.OPT_OUT),
    ("wrong number", Intent.OPT_OUT), ("leave me alone!!", Intent.OPT_OUT), ("I dont want these texts", Intent.OPT_OUT),
    # Not commands: keywords inside a conversation go to a person.
    ("I need to cancel my appointment", Intent.OTHER), ("yes please call tomorrow", Intent.OTHER),
    ("what info do you need", Intent.OTHER), ("Who is this?", Intent.OTHER), ("", Intent.OTHER),
])
def test_classify(body, intent):
    assert classify(body).intent is intent


# --- opt-out ----------------------------------------------------------------------------------

@pytest.mark.parametrize("keyword", ["STOP", "stopall", "Stop all", "UNSUBSCRIBE", "Cancel", "END", "QUIT",
                                     "revoke", "OPT OUT", "optout", "Opt-out."])
def test_each_keyword_is_a_revocation_committed_before_the_one_confirmation(session, campaign, carrier, keyword):
    result = text(session, keyword, carrier)

    revocation = session.execute(select(Revocation)).scalar_one()
    assert (revocation.phone, revocation.channels, revocation.via) == (PHONE, "voice sms", "sms_stop")
    assert revocation.received_at == at(60) and revocation.recorded_by == "carrier"
    assert carrier.revocations_seen == [1]                 # seen from another connection, at send time
    [reply] = carrier.sent
    assert (reply.to, reply.from_) == (PHONE, CALLER_ID)
    assert reply.body == opt_out_confirmation("Acme Solar")
    assert (result.intent, result.action, result.reply_sid) == ("opt_out", "revoked", result.reply_sid)
    assert result.reply_sid is not None and f"revocation#{revocation.id}" in result.detail
    actions = [action for _actor, action in audit_actions(session)]
    assert actions.index("consent.revoked") < actions.index("sms.reply_sent")


def test_the_confirmation_has_no_marketing_and_fits_one_segment():
    body = opt_out_confirmation("Acme Solar")
    assert "Acme Solar" in body and "No more messages will be sent" in body and len(body) <= 160
    for promotional in ("offer", "discount", "deal", "%", "http", "free"):
        assert promotional not in body.lower()


def test_a_redelivered_stop_sends_no_second_confirmation(session, campaign, carrier):
    sid = message_sid()
    first = text(session, "STOP", carrier, sid=sid, when=at(60))
    again = text(session, "STOP", carrier, sid=sid, when=at(75))

    assert len(carrier.sent) == 1
    assert again.duplicate and again == first
    assert session.execute(select(Revocation)).scalars().all().__len__() == 1


def test_two_stops_in_two_messages_are_two_requests(session, campaign, carrier):
    text(session, "STOP", carrier, when=at(60))
    text(session, "stop", carrier, when=at(61))
    assert len(carrier.sent) == 2


def test_a_refused_confirmation_is_recorded_and_never_retried(session, campaign, engine):
    carrier = OrderCheckingCarrier(engine, refuse=CarrierError("unsubscribed recipient", status=400, code=21610))
    sid = message_sid()
    result = text(session, "STOP", carrier, sid=sid)
    again = text(session, "STOP", carrier, sid=sid, when=at(90))

    assert count(session, Revocation) == 1
    assert result.reply_sid is None and "reply not sent: carrier refused the reply" in result.detail
    assert again.duplicate and carrier.revocations_seen == [1]          # asked once, never again
    assert ("carrier", "sms.reply_failed") in audit_actions(session)


def test_without_an_adapter_the_opt_out_is_still_stored(session, campaign):
    result = text(session, "STOP", None)
    assert count(session, Revocation) == 1
    assert result.action == "revoked" and "no carrier adapter configured" in result.detail


def test_the_confirmations_delivery_statuses_are_accepted(session, campaign, carrier):
    result = text(session, "STOP", carrier)
    status = handle_webhook(session, "sms-status", {"MessageSid": result.reply_sid, "MessageStatus": "delivered"},
                            at(65))
    assert status.attempt_id is None and "reply we sent" in status.detail


def test_a_stop_from_someone_we_never_texted_is_still_a_revocation(session, carrier):
    result = text(session, "STOP", carrier, phone="+13055550199")
    assert session.execute(select(Revocation.phone)).scalar_one() == "+13055550199"
    assert result.action == "revoked" and len(carrier.sent) == 1


@pytest.mark.parametrize("body", ["please don't text me anymore", "Remove me", "stop texting me!!"])
def test_free_text_that_reads_as_an_opt_out_is_treated_as_stop(session, campaign, carrier, body):
    result = text(session, body, carrier)
    assert result.intent == "opt_out" and count(session, Revocation) == 1 and len(carrier.sent) == 1


# --- everything else --------------------------------------------------------------------------

def test_other_text_is_stored_for_review_and_gets_no_reply(session, campaign, carrier):
    sid = message_sid()
    result = text(session, "Who is this? Call me after 5", carrier, sid=sid)
    stored = session.execute(select(CarrierEvent).where(CarrierEvent.carrier_id == sid)).scalar_one()
    assert result.action == "stored_for_review" and carrier.sent == []
    assert stored.payload["params"]["Body"] == "Who is this? Call me after 5"
    assert ("carrier", "sms.review_needed") in audit_actions(session)
    assert count(session, Revocation) == 0


def test_an_inbound_text_needs_a_sid_and_a_sender(session, carrier):
    with pytest.raises(InvalidEvent, match="missing From"):
        handle_webhook(session, "sms-inbound", {"MessageSid": message_sid(), "Body": "STOP"}, at(1), adapter=carrier)
    assert count(session, CarrierEvent) == 0


def test_text_no_database_can_store_is_stored_anyway(session, campaign, carrier):
    result = text(session, "STOP\x00 \ud800", carrier)
    assert result.action == "revoked" and count(session, Revocation) == 1


# --- HELP -------------------------------------------------------------------------------------

@pytest.mark.parametrize("keyword", ["HELP", "info"])
def test_help_answers_brand_contact_rates_and_how_to_opt_out(session, campaign, engine, keyword):
    carrier = OrderCheckingCarrier(engine, expect_revocation=False)
    sid = message_sid()
    result = text(session, keyword, carrier, sid=sid)
    text(session, keyword, carrier, sid=sid)                      # redelivered: no second reply

    [reply] = carrier.sent
    for required in ("Acme Solar", CALLER_ID, "Msg & data rates may apply", "Reply STOP to opt out"):
        assert required in reply.body
    assert result.action == "help_sent" and count(session, Revocation) == 0


# --- START ------------------------------------------------------------------------------------

def test_start_after_stop_re_opts_in_texts_only_where_consent_exists(session, campaign, engine):
    record = grant_sms_consent(session)
    carrier = OrderCheckingCarrier(engine)
    text(session, "STOP", carrier, when=at(60))
    assert sms_reliance(session, at(61)).grant is None            # the STOP took effect

    result = text(session, "START", carrier, when=at(120))

    # The STOP also put the number on the internal list, which only compliance lifts: the START
    # is recorded (consent and request), and the reply says texts resume after review.
    assert result.action == "resubscribe_requested" and result.applied
    reinstated = session.execute(select(ConsentRecord).where(ConsentRecord.id != record.id)).scalar_one()
    assert (reinstated.channels, reinstated.kind, reinstated.purposes) == ("sms", "written", "telemarketing")
    assert reinstated.granted_at == at(120) and f"reinstating consent#{record.id}" in reinstated.evidence["source"]
    assert sms_reliance(session, at(121)).grant is not None       # texts allowed again
    facts = records.facts_for(session, PHONE, at(121))
    voice = records.relied_on(facts.consents, facts.revocations, Channel.VOICE, Purpose.TELEMARKETING,
                              ConsentNeed.WRITTEN, at(121))
    assert voice.grant is None                                    # calls stay revoked
    assert "resume only once our team has reviewed it" in carrier.sent[-1].body and len(carrier.sent) == 2


def test_start_without_consent_records_nothing_and_says_why(session, campaign, engine):
    carrier = OrderCheckingCarrier(engine, expect_revocation=False)
    text(session, "STOP", carrier, when=at(60))
    consents, audits = count(session, ConsentRecord), count(session, AuditEvent)

    result = text(session, "START", carrier, when=at(120))

    assert result.action == "no_consent" and not result.applied
    assert count(session, ConsentRecord) == consents == 0
    assert "can't resubscribe you by text without your consent" in carrier.sent[-1].body
    assert [a for _, a in audit_actions(session)][audits:] == ["sms.reply_sent"]


def test_start_does_not_undo_an_opt_out_made_another_way(session, campaign, engine):
    grant_sms_consent(session)
    records.revoke(session, PHONE, {Channel.VOICE, Channel.SMS}, RevocationVia.AGENT, at(30),
                   actor="agent:7", at=at(30), audit=audit.append)
    carrier = OrderCheckingCarrier(engine, expect_revocation=False)
    result = text(session, "START", carrier, when=at(120))
    assert result.action == "no_consent" and count(session, ConsentRecord) == 1


def test_start_while_subscribed_records_nothing(session, campaign, engine):
    grant_sms_consent(session)
    carrier = OrderCheckingCarrier(engine, expect_revocation=False)
    result = text(session, "START", carrier, when=at(120))
    assert result.action == "already_subscribed" and count(session, ConsentRecord) == 1


def test_start_does_not_revive_an_expired_consent(session, campaign, engine):
    grant_sms_consent(session, expires_at=at(90))
    carrier = OrderCheckingCarrier(engine, expect_revocation=False)
    text(session, "STOP", carrier, when=at(60))
    result = text(session, "START", carrier, when=at(120))
    assert result.action == "no_consent" and count(session, ConsentRecord) == 1


def test_stop_start_stop_start_keeps_one_sms_record_per_scope(session, campaign, engine):
    grant_sms_consent(session)
    carrier = OrderCheckingCarrier(engine, expect_revocation=False)
    for second, body in ((60, "STOP"), (120, "START"), (180, "STOP"), (240, "START")):
        text(session, body, carrier, when=at(second))
    current = records.current_records(session.execute(select(ConsentRecord)).scalars())
    assert sorted(r.channels for r in current) == ["sms", "voice sms"]
    assert sms_reliance(session, at(241)).grant.granted_at == at(240)


def test_two_racing_deliveries_of_one_stop_send_one_confirmation(engine, campaign, carrier):
    # Twilio may redeliver while the first delivery is still being handled: two sessions, two
    # threads, one MessageSid. Both may store the revocation; only one may confirm.
    import threading
    from sqlmodel import Session

    sid, barrier, results, errors = message_sid(), threading.Barrier(2), [], []
    params = {"MessageSid": sid, "From": PHONE, "To": CALLER_ID, "Body": "STOP"}

    def deliver(second):
        try:
            with Session(engine) as own:
                barrier.wait(timeout=10)
                results.append(handle_webhook(own, "sms-inbound", params, at(second), adapter=carrier))
        except BaseException as error:           # surfaced below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=deliver, args=(second,)) for second in (60, 61)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(carrier.sent) == 1
    assert sorted(r.duplicate for r in results) == [False, True]
