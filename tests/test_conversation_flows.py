"""Whole calls through the simulator, which fetches the TwiML URLs and follows them like Twilio:
the same `outbound.conversation` code the webhook routes run."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from consent import records
from consent.ledger_io import ConsentIn
from consent.rules import load_pack
from consent.tables import Revocation
from dispatch_support import FakeRegistry, running_campaign
from outbound import audit
from outbound.conversation import Rendering, on_gather
from outbound.memory import conversation_of
from outbound.memory_tables import ConversationFact, ConversationTurn
from outbound.models import Attempt, AuditEvent, Decision
from outbound.scripts.model import Gather
from scheduler.dispatch import DispatchConfig, dispatch_once
from telephony import simulator as simulator_module
from telephony import twiml
from telephony.call_requests import handle_carrier_event
from telephony.simulator import SimulationProfile, SimulatorAdapter

NOON_NEW_YORK = datetime(2026, 7, 15, 16, 0, tzinfo=timezone.utc)        # Wednesday 12:00 EDT
FIVE_PM_NEW_YORK = datetime(2026, 7, 15, 21, 0, tzinfo=timezone.utc)
PHONE = "(212) 555-0123"
E164 = "+12125550123"
PACK = load_pack()
CONVERSATION = {"script": "solar_qualify", "record_calls": True, "machine_policy": "leave_voicemail",
                "seller_name": "Sunrise Solar", "callback_number": "+18005550100"}
RETRY = {"voicemail": {"delay_seconds": 86400, "max_attempts": 3}}


class Harness:
    """A running campaign of one contact, a seeded simulator and a clock."""

    def __init__(self, engine, persona: str | None, outcome: str = "human", **conversation):
        self.engine = engine
        self.now = NOON_NEW_YORK
        self.campaign_id = running_campaign(engine, [PHONE], name="solar", voice="artificial", settings={
            "conversation": {**CONVERSATION, **conversation}, "retry": RETRY})
        with Session(engine) as session:       # the written consent an artificial-voice call needs
            records.add_consent(session, ConsentIn(
                phone=E164, kind="written", channels=["voice", "sms"], purposes=["informational", "telemarketing"],
                seller="Sunrise Solar", granted_at=NOON_NEW_YORK - timedelta(days=30), evidence={"source": "test web form"}),
                actor="test", at=NOON_NEW_YORK - timedelta(days=30), audit=audit.append)
            session.commit()
        profile = SimulationProfile(call_outcomes={outcome: 1.0}, converse=True,
                                    personas={persona or "silent": 1.0}, talk_seconds=(170.0, 180.0))
        self.adapter = SimulatorAdapter(7, self.deliver, clock=lambda: self.now, profile=profile)

    def deliver(self, kind, params, at):
        with Session(self.engine) as session:
            return handle_carrier_event(session, kind, params, at, adapter=self.adapter)

    def dial_and_talk(self, at: datetime | None = None, minutes: int = 10):
        self.now = at or self.now
        report = dispatch_once(self.engine, self.adapter, worker_id="w1", now=self.now, pack=PACK,
                               registry=FakeRegistry(), config=DispatchConfig(), sleep=lambda _s: None)
        self.now += timedelta(minutes=minutes)
        self.adapter.advance(self.now)
        return report

    def rows(self, model, *where):
        with Session(self.engine) as session:
            return session.execute(select(model).where(*where)).scalars().all()


def attempts(harness: Harness) -> list[Attempt]:
    return sorted(harness.rows(Attempt, Attempt.campaign_id == harness.campaign_id), key=lambda a: a.attempt_no)


def said(harness: Harness, attempt_id: int) -> list[str]:
    return [turn.said for turn in sorted(harness.rows(ConversationTurn, ConversationTurn.attempt_id == attempt_id),
                                         key=lambda t: t.turn_no)]


def test_a_machine_answers_and_a_compliant_voicemail_is_left_then_retried(engine):
    harness = Harness(engine, None, outcome="machine")
    assert harness.dial_and_talk().dialed == 1
    first = attempts(harness)[0]
    assert first.outcome == "voicemail" and first.answered_by.startswith("machine_end")
    facts = harness.rows(ConversationFact, ConversationFact.kind == "voicemail_left")
    assert len(facts) == 1
    message = facts[0].detail
    assert "Sunrise Solar" in message and "8 0 0, 5 5 5, 0 1 0 0" in message and "press 9" in message
    # The outcome fed the retry policy: the next attempt is pending, a day later, for the gate.
    retry = attempts(harness)[1]
    assert retry.status == "pending" and retry.due_at > NOON_NEW_YORK + timedelta(hours=24)
    assert any(e.action == "voicemail.leave_voicemail" for e in harness.rows(AuditEvent))


def test_a_machine_is_hung_up_on_when_the_campaign_says_so(engine):
    harness = Harness(engine, None, outcome="machine", machine_policy="hang_up")
    harness.dial_and_talk()
    assert attempts(harness)[0].outcome == "voicemail"
    assert harness.rows(ConversationFact, ConversationFact.kind == "voicemail_left") == []
    assert any(e.action == "voicemail.hang_up" for e in harness.rows(AuditEvent))


@pytest.mark.parametrize("persona,via,fact", [("opt_out_spoken", "spoken", "spoken_opt_out"),
                                              ("opt_out_key", "keypress", "keypress_opt_out")])
def test_the_caller_opts_out_mid_call_and_the_call_ends_politely(engine, persona, via, fact):
    harness = Harness(engine, persona)
    harness.dial_and_talk()
    revocations = harness.rows(Revocation, Revocation.phone == E164)
    assert [r.via for r in revocations] == [via] and set(revocations[0].channels.split()) == {"voice", "sms"}
    turns = sorted(harness.rows(ConversationTurn), key=lambda t: t.turn_no)
    last = turns[-1]
    assert last.action == "opt_out" and "You will not get more calls from Sunrise Solar" in last.said
    assert "<Hangup" in last.twiml and "<Gather" not in last.twiml
    assert revocations[0].recorded_at <= last.at
    assert [f.kind for f in harness.rows(ConversationFact)] == [fact]
    assert attempts(harness)[0].status == "completed"
    # The next attempt, if any, meets the revocation at the gate: nothing more is dialled.
    assert harness.dial_and_talk(at=NOON_NEW_YORK + timedelta(days=1)).dialed == 0


def test_a_callback_after_5_pm_moves_the_due_time_changes_the_greeting_and_is_gated(engine, monkeypatch):
    monkeypatch.setitem(simulator_module.PERSONA_SPEECH, "callback", ("Can you call me back after 5 pm?",))
    harness = Harness(engine, "callback")
    harness.dial_and_talk()
    first, second = attempts(harness)
    assert first.status == "completed" and second.status == "pending" and second.due_at == FIVE_PM_NEW_YORK
    fact = harness.rows(ConversationFact, ConversationFact.kind == "callback_requested_at")[0]
    assert (fact.value, fact.detail) == ("2026-07-15T21:00:00.000000Z", "after 5 PM")
    assert "We will call you back after 5 PM" in said(harness, first.id)[-1]
    # Not due before 5 pm; at 5 pm the gate decides, and only then is it dialled.
    assert harness.dial_and_talk(at=FIVE_PM_NEW_YORK - timedelta(minutes=5), minutes=1).claimed == 0
    report = harness.dial_and_talk(at=FIVE_PM_NEW_YORK)
    assert report.claimed == 1 and report.allowed == 1
    assert harness.rows(Decision, Decision.attempt_id == second.id)[0].verdict == "allow"
    assert "last time you asked us to call you back after 5 PM" in said(harness, second.id)[0]


def test_a_qualified_caller_reaches_the_transfer_and_is_never_left_in_silence(engine):
    harness = Harness(engine, "interested")
    harness.dial_and_talk()
    turns = sorted(harness.rows(ConversationTurn), key=lambda t: t.turn_no)
    assert turns[-1].action == "transfer" and turns[-1].intent == "yes"
    assert "<Say>" in turns[-1].twiml        # the hand-over (or, with no agent free, the apology) is spoken
    assert [f.kind for f in harness.rows(ConversationFact)] == ["qualified"]


def test_a_confused_caller_gets_one_reprompt_then_a_polite_goodbye(engine):
    harness = Harness(engine, "confused")
    harness.dial_and_talk()
    turns = sorted(harness.rows(ConversationTurn), key=lambda t: t.turn_no)
    assert [t.intent for t in turns[1:]] == ["no_match", "no_match"]
    assert "Sorry, I did not understand." in turns[1].said and "<Gather" in turns[1].twiml
    assert turns[2].action == "end" and "<Hangup" in turns[2].twiml


def test_the_revocation_is_committed_before_the_twiml_is_rendered(engine):
    Harness(engine, None)                     # the campaign, its contact and a pending attempt
    with Session(engine) as session:
        attempt = session.execute(select(Attempt)).scalars().first()
        attempt.carrier_id, attempt.status = "CA" + "a" * 32, "dialing"
        session.commit()
        seen = []

        def render(render_session, rendering: Rendering) -> str:
            with Session(engine) as other:
                seen.append(other.execute(select(func.count()).select_from(Revocation)).scalar_one())
            return twiml.render(render_session, rendering, public_url="https://calls.example.com")

        on_gather(session, attempt.id, {"CallSid": "CA" + "a" * 32, "Digits": "9"}, NOON_NEW_YORK, turn=1,
                  position=Gather(node="homeowner"), render=render)
    assert seen == [1]


def test_the_transcript_reads_back_in_order(engine):
    harness = Harness(engine, "not_interested")
    harness.dial_and_talk()
    with Session(engine) as session:
        conversation = conversation_of(session, E164)
    assert [t["turn"] for t in conversation["turns"]] == [0, 1]
    # Recorded, but New York is a one-party state: no recording notice; the AI voice is disclosed.
    assert conversation["turns"][0]["said"].startswith("You are hearing an artificial, computer-generated voice. "
                                                       "This is a call from Sunrise Solar.")
    assert conversation["turns"][1]["heard"] in ("No, I'm not interested.", "No, we rent.", "pressed 2")
    assert conversation["facts"][0]["kind"] == "not_interested"
