"""Warm transfer through the simulator: the caller is dialed by dispatch, answers, the script
reaches `transfer`, and simulated agents answer and join, all through the code the webhooks use."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from consent import records
from consent.ledger_io import ConsentIn
from consent.rules import load_pack
from outbound import agents, audit, transfer_events, transfers
from outbound.agent_tables import Agent, LiveAnswer, Transfer
from outbound.models import Attempt, AuditEvent, Decision
from scheduler.dispatch import DispatchConfig, dispatch_once
from telephony.call_requests import handle_carrier_event
from telephony.simulated_agents import KINDS as AGENT_KINDS
from telephony.simulated_agents import AgentBehaviour, SimulatedAgents, attach
from telephony.simulator import SimulationProfile, SimulatorAdapter
from dispatch_support import NOON_NEW_YORK, FakeRegistry, running_campaign

PUBLIC = "https://calls.example.com"
PHONE = "(212) 555-0123"
AGENT_NUMBERS = ["+12125550150", "+12125550151"]
ANSWERS_ONLY = SimulationProfile(call_outcomes={"human": 1.0}, reply_share=0.0, stop_text_after_call=0.0,
                                 talk_seconds=(150.0, 150.0), ring_seconds=(5.0, 5.0))


class World:
    """A running campaign, a seeded simulator with agents attached, and a clock it owns."""

    def __init__(self, engine: Engine, *, agent_count: int = 2, behaviour: AgentBehaviour | None = None,
                 start: datetime = NOON_NEW_YORK, purpose: str = "informational"):
        self.engine = engine
        self.now = start
        with Session(engine) as session:            # agents first: a live telemarketing campaign needs them
            for index in range(agent_count):
                agents.add_agent(session, f"agent{index}", AGENT_NUMBERS[index], status="available", actor="test",
                                 at=start)
            session.commit()
        self.campaign_id = running_campaign(engine, [PHONE], at=start, purpose=purpose)
        self.simulator = SimulatorAdapter("transfers", self.deliver, clock=lambda: self.now, profile=ANSWERS_ONLY)
        self.agents = attach(self.simulator, SimulatedAgents(AGENT_NUMBERS, behaviour), engine=engine,
                             public_url=PUBLIC)

    def deliver(self, kind: str, params: dict, at: datetime) -> str | None:
        assert kind not in AGENT_KINDS                   # attach() hands those to outbound.transfers
        with Session(self.engine) as session:
            answer = handle_carrier_event(session, kind, params, at, adapter=self.simulator, public_url=PUBLIC)
            session.commit()
            return answer

    def run_until(self, at: datetime, step: timedelta = timedelta(seconds=1)) -> None:
        while self.now < at:
            self.now = min(at, self.now + step)
            self.simulator.advance(self.now)

    def dispatch(self) -> None:
        dispatch_once(self.engine, self.simulator, worker_id="t", now=self.now, pack=load_pack(),
                      registry=FakeRegistry(), config=DispatchConfig(), sleep=lambda _s: None,
                      monotonic=lambda: self.now.timestamp())

    def answered_attempt(self) -> Attempt:
        """Dispatch the first attempt and run until the person has answered."""
        self.dispatch()
        self.run_until(self.now + timedelta(seconds=15))
        with Session(self.engine) as session:
            attempt = session.execute(select(Attempt).where(Attempt.campaign_id == self.campaign_id,
                                                            Attempt.attempt_no == 1)).scalar_one()
            assert attempt.carrier_status == "in-progress", attempt
            return attempt

    def transfer(self, attempt_id: int) -> str:
        """What the voice route does when the script reaches `transfer`."""
        with Session(self.engine) as session:
            twiml = transfers.begin_transfer(session, attempt_id=attempt_id, at=self.now, public_url=PUBLIC,
                                             adapter=self.simulator)
            session.commit()
            return twiml


def one_transfer(session: Session) -> Transfer:
    session.expire_all()
    return session.execute(select(Transfer)).scalar_one()


def test_human_qualifies_is_transferred_and_agent_joins(engine):
    world = World(engine)
    attempt = world.answered_attempt()
    feed = transfer_events.broadcaster.subscribe()
    twiml = world.transfer(attempt.id)
    assert "<Conference" in twiml and "transfer-" in twiml and f"{PUBLIC}/v1/conference/" in twiml
    assert 'startConferenceOnEnter="false"' in twiml and "waitUrl=" in twiml
    offered = feed.get(timeout=0)
    assert offered is not None and offered.kind == "offer"

    world.run_until(world.now + timedelta(seconds=3))
    with Session(engine) as session:
        transfer = one_transfer(session)
        assert (transfer.state, transfer.result) == ("connected", "agent_joined")
        assert session.get(Agent, transfer.agent_id).status == "busy"
        assert session.execute(select(LiveAnswer)).scalar_one().abandoned is False

    world.run_until(world.now + timedelta(minutes=4))
    with Session(engine) as session:
        transfer = one_transfer(session)
        assert transfer.result == "transferred"
        assert transfer.disposition is not None                      # the simulated agent wrapped up
        assert session.get(Agent, transfer.agent_id).status == "available"
        actions = [e.action for e in session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()]
        assert actions.index("transfer.begun") < actions.index("transfer.agent_joined") < actions.index("transfer.ended")
    feed.close()


def test_no_agent_free_schedules_a_gated_callback(engine):
    # 20:59 in New York: the callback, an hour later, falls outside the calling window.
    world = World(engine, agent_count=1, start=datetime(2026, 7, 16, 0, 59, tzinfo=timezone.utc),
                  purpose="telemarketing")
    attempt = world.answered_attempt()
    with Session(engine) as session:     # taken by another call while this one was ringing
        agents.set_status(session, agents.find_agent(session, "agent0"), "busy", actor="test", at=world.now)
        session.commit()
    twiml = world.transfer(attempt.id)
    assert "no representative is free" in twiml and "<Gather" in twiml and "press 9" in twiml
    assert "This call is from c1" in twiml                             # identified, with the number
    with Session(engine) as session:
        transfer = one_transfer(session)
        assert transfer.result == "no_agent"
        callback = session.get(Attempt, transfer.callback_attempt_id)
        assert callback.status == "pending" and callback.attempt_no == 2
        assert callback.due_at == world.now + timedelta(hours=1)
        assert session.execute(select(LiveAnswer)).scalar_one().abandoned is True

    world.now = callback.due_at
    with Session(engine) as session:     # free again: pacing lets the callback be dialed
        agents.set_status(session, agents.find_agent(session, "agent0"), "available", actor="test", at=world.now)
        session.commit()
    world.dispatch()                     # due, but 22:00 local: the gate defers it to the morning
    with Session(engine) as session:
        callback = session.get(Attempt, transfer.callback_attempt_id)
        decision = session.execute(select(Decision).where(Decision.attempt_id == callback.id)).scalars().first()
        assert decision is not None and decision.verdict == "defer"
        assert callback.status == "pending" and callback.due_at > world.now


def test_agent_who_does_not_answer_frees_them_and_the_next_is_called(engine):
    world = World(engine, behaviour=AgentBehaviour(no_answer_share=1.0))
    attempt = world.answered_attempt()
    world.transfer(attempt.id)
    world.run_until(world.now + timedelta(seconds=50))
    with Session(engine) as session:
        transfer = one_transfer(session)
        assert transfer.result == "no_agent"
        assert sorted(transfer.declined_by) == [1, 2]                 # both were tried
        assert {a.status for a in session.execute(select(Agent)).scalars()} == {"available"}
        assert session.get(Attempt, transfer.callback_attempt_id).status == "pending"


def test_transfer_with_no_agents_defined_offers_a_callback(engine):
    world = World(engine, agent_count=0)
    attempt = world.answered_attempt()
    twiml = world.transfer(attempt.id)
    assert "We will call you back in about an hour" in twiml and twiml.rstrip().endswith("</Response>")
    assert "<Hangup" in twiml
    with Session(engine) as session:
        assert one_transfer(session).result == "no_agent"


def test_caller_hanging_up_on_hold_is_recorded_and_frees_the_agent(engine):
    world = World(engine, behaviour=AgentBehaviour(answer_seconds=(15.0, 15.0)))
    attempt = world.answered_attempt()
    with Session(engine) as session:
        transfers.set_policy(session, world.campaign_id, wait_seconds=300, callback_delay_seconds=3600,
                             actor="test", at=world.now)
        session.commit()
    world.now += timedelta(seconds=140)  # the caller talks for 150 s after answering, then hangs up
    world.simulator.advance(world.now)
    world.transfer(attempt.id)
    world.run_until(world.now + timedelta(seconds=30))
    with Session(engine) as session:
        transfer = one_transfer(session)
        assert transfer.result == "caller_hung_up_on_hold"
        assert session.get(Agent, transfer.agent_id).status == "available"


def test_repeated_transfer_request_does_not_start_a_second_one(engine):
    world = World(engine)
    attempt = world.answered_attempt()
    first = world.transfer(attempt.id)
    assert world.transfer(attempt.id) == first
    with Session(engine) as session:
        assert len(session.execute(select(Transfer)).scalars().all()) == 1


def test_context_card_names_caller_consent_and_prior_attempts(engine):
    world = World(engine)
    attempt = world.answered_attempt()
    world.transfer(attempt.id)
    with Session(engine) as session:
        card = transfers.context_card(session, one_transfer(session).id)
    assert card["caller"]["phone"] == "+12125550123"
    assert card["campaign"]["name"] == "c1"
    assert card["consent"]["relied_on"][0]["channel"] == "voice"
    assert card["consent"]["basis"]                                   # says why, even with no consent
    assert card["script_path"] == [] and card["facts"] == []
    assert isinstance(card["prior_attempts"], list)


def test_unknown_transfer_attempt_is_a_clear_error(session):
    with pytest.raises(transfers.TransferError, match="no attempt 999"):
        transfers.begin_transfer(session, attempt_id=999, at=NOON_NEW_YORK, public_url=PUBLIC)


# --- the whole call: the script qualifies the caller and reaches `transfer` ----------------------

CONVERSATION = {"script": "solar_qualify", "record_calls": False, "machine_policy": "hang_up",
                "seller_name": "Sunrise Solar", "callback_number": "+18005550100"}


@pytest.mark.parametrize("agent_count,result", [(2, "transferred"), (0, "no_agent")])
def test_interested_caller_is_qualified_by_the_script_and_handed_to_an_agent(engine, agent_count, result):
    now = {"at": NOON_NEW_YORK}
    campaign_id = running_campaign(engine, [PHONE], name="solar", voice="artificial",
                                   settings={"conversation": CONVERSATION})
    profile = SimulationProfile(call_outcomes={"human": 1.0}, converse=True, personas={"interested": 1.0},
                                talk_seconds=(170.0, 180.0), stop_text_after_call=0.0)

    def deliver(kind, params, at):
        with Session(engine) as session:
            return handle_carrier_event(session, kind, params, at, adapter=simulator, public_url=PUBLIC)

    simulator = SimulatorAdapter(11, deliver, clock=lambda: now["at"], profile=profile)
    attach(simulator, SimulatedAgents(AGENT_NUMBERS), engine=engine, public_url=PUBLIC)
    with Session(engine) as session:       # the written consent an artificial-voice call needs
        records.add_consent(session, ConsentIn(
            phone="+12125550123", kind="written", channels=["voice"], purposes=["informational"],
            seller="Sunrise Solar", granted_at=NOON_NEW_YORK - timedelta(days=30), evidence={"source": "test web form"}),
            actor="test", at=NOON_NEW_YORK - timedelta(days=30), audit=audit.append)
        for index in range(agent_count):
            agents.add_agent(session, f"advisor{index}", AGENT_NUMBERS[index], status="available", actor="test",
                             at=now["at"])
        session.commit()
    dispatch_once(engine, simulator, worker_id="t", now=now["at"], pack=load_pack(), registry=FakeRegistry(),
                  config=DispatchConfig(), sleep=lambda _s: None, monotonic=lambda: now["at"].timestamp())
    for _ in range(600):
        now["at"] += timedelta(seconds=1)
        simulator.advance(now["at"])
    with Session(engine) as session:
        transfer = one_transfer(session)
        assert transfer.campaign_id == campaign_id and transfer.result == result
        card = transfers.context_card(session, transfer.id)
        assert [step["node"] for step in card["script_path"]][0] is not None     # the path the script took
        assert card["consent"]["basis"].startswith("written consent: consent#")  # and the evidence relied on
        assert card["consent"]["relied_on"][0]["evidence"]
        if result == "transferred":
            assert transfer.agent_joined_at is not None and transfer.disposition is not None
        else:
            callback = session.get(Attempt, transfer.callback_attempt_id)
            assert callback.status == "pending" and callback.due_at == transfer.ended_at + timedelta(hours=1)


def test_sweep_gives_up_on_a_slow_agent_and_the_caller_hears_the_callback_offer(engine):
    world = World(engine, agent_count=1, behaviour=AgentBehaviour(answer_seconds=(60.0, 60.0)))
    attempt = world.answered_attempt()
    world.transfer(attempt.id)
    world.run_until(world.now + timedelta(seconds=46))
    with Session(engine) as session:
        assert one_transfer(session).state == "ringing_agent"          # nobody asked yet
        assert transfers.sweep(session, at=world.now, public_url=PUBLIC, adapter=world.simulator) == 1
        session.commit()
    world.run_until(world.now + timedelta(seconds=60))                  # the agent would have joined now
    with Session(engine) as session:
        transfer = one_transfer(session)
        assert transfer.result == "no_agent" and transfer.agent_joined_at is None
        assert session.get(Agent, transfer.agent_id).status == "available"
        assert session.get(Attempt, transfer.callback_attempt_id).status == "pending"
        assert transfers.sweep(session, at=world.now, public_url=PUBLIC, adapter=world.simulator) == 0


def test_phone_agents_without_a_carrier_are_not_blamed(session, monkeypatch):
    from webhook_support import add_attempt, add_campaign
    monkeypatch.setattr(transfers, "_adapter", None)
    attempt = add_attempt(session, add_campaign(session), "+12125550123", carrier_status="in-progress")
    agents.add_agent(session, "ana", "+12125550150", status="available", actor="test", at=NOON_NEW_YORK)
    twiml = transfers.begin_transfer(session, attempt_id=attempt.id, at=NOON_NEW_YORK, public_url=PUBLIC)
    assert "no representative is free" in twiml
    assert agents.find_agent(session, "ana").status == "available"
