"""The demo: a sample campaign over ~1,000 fictional contacts, run to completion against the
seeded simulator in accelerated simulated time, through the same code a real run uses.

Nothing is faked past the adapter: the facts come from the bundled consent file, DNC lists and
a small national registry loaded through the real loaders; every attempt goes through the
scheduler's dispatch (claim, gate, decision and audit stored, then the carrier); the simulator's
events come back through the webhook code path (`handle_webhook`).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlmodel import Session

from consent import dnc, records
from consent.ledger_io import load_path
from consent.registry_store import RegistryStore
from consent.rules import load_pack
from outbound import audit
from outbound.campaigns import create_campaign, find_campaign, start_campaign, validate_campaign
from outbound.db import session_scope
from outbound.lists.importer import import_contacts, open_list
from outbound.models import Attempt, Campaign, Decision
from scheduler import claims
from scheduler.dispatch import DispatchConfig, dispatch_once
from scheduler.housekeeping import housekeeping
from telephony.call_requests import handle_carrier_event
from telephony.simulator import SimulationProfile, SimulatorAdapter
from telephony.simulated_agents import attach as attach_agents
from telephony.simulated_agents import default_agents

ACTOR = "demo"
DEMO_START = datetime(2026, 7, 13, 12, 0, tzinfo=timezone.utc)    # a Monday, 08:00 in New York
TICK = timedelta(minutes=5)
MAX_DAYS = 10
DEMO_CAMPAIGN = {
    "channel": "voice", "purpose": "telemarketing", "voice": "artificial", "automated": True,
    "caller_id": "+12125550100",
    "script": "Hi, this is Ava, an automated assistant calling for Sunrise Solar about your quote.",
    "settings": {"hours": "09:00-20:00", "cps": 20, "max_concurrent": 200,
                 "retry": {"no-answer": {"delay_seconds": 4 * 3600, "max_attempts": 3},
                           "busy": {"delay_seconds": 1800, "max_attempts": 3},
                           "voicemail": {"delay_seconds": 86400, "max_attempts": 2}},
                 # The conversation: the bundled decision-tree script, recorded (announced in
                 # all-party states), a compliant voicemail on answering machines.
                 "conversation": {"script": "solar_qualify", "record_calls": True,
                                  "machine_policy": "leave_voicemail", "seller_name": "Sunrise Solar"}},
}


@dataclass
class DemoReport:
    campaign: str
    contacts: int
    rejected_rows: int
    simulated_until: datetime
    allowed: int = 0
    deferred: int = 0
    blocked: int = 0
    blocked_by_reason: dict[str, int] = field(default_factory=dict)
    deferred_by_reason: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    called: int = 0
    example_blocked: str | None = None      # a decision id to replay
    completed: int = 0
    transferred: int = 0

    def counts(self) -> dict:
        return {"allowed": self.allowed, "deferred": self.deferred, "blocked": self.blocked,
                "blocked_by_reason": self.blocked_by_reason, "called": self.called, "completed": self.completed,
                "transferred": self.transferred}


def sample_path(name: str) -> Path:
    return Path(str(resources.files("outbound").joinpath("samples", name)))


def run_demo(engine: Engine, data_dir: Path, *, seed: int = 7, start: datetime = DEMO_START,
             campaign_name: str | None = None) -> DemoReport:
    campaign_name = campaign_name or f"demo-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    registry = _load_facts(engine, data_dir, start)
    campaign_id, contacts, rejected = _create_campaign(engine, campaign_name, start)
    until = _run(engine, registry, campaign_id, seed=seed, start=start)
    return _report(engine, campaign_id, campaign_name, contacts, rejected, until)


def _load_facts(engine: Engine, data_dir: Path, start: datetime) -> RegistryStore:
    """Consent records, the internal list and a national registry synced two days before."""
    loaded_at = start - timedelta(days=2)
    with session_scope(engine) as session:
        records.import_loaded(session, load_path(sample_path("consents.jsonl")), source="demo consents.jsonl",
                              actor=ACTOR, at=loaded_at, audit=audit.append)
        for phone in sample_path("internal-dnc.txt").read_text().split():
            dnc.add_internal(session, phone, reason="asked not to be called (demo data)", actor=ACTOR,
                             at=loaded_at, audit=audit.append)
    store = RegistryStore(data_dir / "registry")
    report = store.ingest_full([sample_path("national-registry.txt")], synced_at=loaded_at, now=loaded_at)
    with session_scope(engine) as session:
        dnc.record_national_load(session, kind="national", version=report.version,
                                 files=list(store.manifest()["files"]),
                                 entries=report.entries, synced_at=loaded_at, at=loaded_at, actor=ACTOR,
                                 audit=audit.append)
    return store


def _create_campaign(engine: Engine, name: str, start: datetime) -> tuple[int, int, int]:
    with session_scope(engine) as session:
        campaign = create_campaign(session, validate_campaign({"name": name, **DEMO_CAMPAIGN}), actor=ACTOR,
                                   at=start - timedelta(hours=1))
        campaign_id = campaign.id
    with sample_path("contacts.csv").open("rb") as stream:
        reader, columns = open_list(stream)
        result = import_contacts(engine, reader, columns, campaign_id=campaign_id, file_name="contacts.csv",
                                 actor=ACTOR, at=start - timedelta(hours=1))
    with session_scope(engine) as session:
        start_campaign(session, find_campaign(session, campaign_id), actor=ACTOR, at=start)
    summary = result.summary()
    return campaign_id, summary["accepted"], summary["rejected"]


def _run(engine: Engine, registry: RegistryStore, campaign_id: int, *, seed: int, start: datetime) -> datetime:
    """Tick the simulated clock: dispatch, deliver carrier events, reap, keep house, until done."""
    clock = {"now": start}

    def deliver(kind: str, params: dict, at: datetime) -> str | None:
        # Events and TwiML requests (the answer URL, each reply) take the webhook code paths.
        with Session(engine) as session:
            return handle_carrier_event(session, kind, params, at, adapter=simulator)

    simulator = SimulatorAdapter(seed, deliver, clock=lambda: clock["now"], profile=SimulationProfile(converse=True))
    _add_demo_agents(engine, attach_agents(simulator, default_agents(DEMO_AGENTS), engine=engine), start)
    pack = load_pack()
    config = DispatchConfig()
    end = start + timedelta(days=MAX_DAYS)
    while clock["now"] < end:
        now = clock["now"]
        dispatch_once(engine, simulator, worker_id="demo", now=now, pack=pack, registry=registry,
                      config=config, sleep=lambda _seconds: None, monotonic=lambda: now.timestamp())
        simulator.advance(now)
        claims.reap(engine, simulator, now=now, call_lease_seconds=config.call_lease_seconds,
                    callback_window_seconds=config.callback_window_seconds)
        housekeeping(engine, simulator, now=now)
        _sweep_transfers(engine, simulator, now)
        if _finished(engine, campaign_id) and not simulator.pending():
            break
        clock["now"] = now + TICK
    return clock["now"]


DEMO_AGENTS = 4


def _add_demo_agents(engine: Engine, simulated, at: datetime) -> None:
    """Agents at the simulated agents' numbers, available (kept across demo runs on one database)."""
    from outbound import agents
    with session_scope(engine) as session:
        for index, number in enumerate(sorted(simulated.numbers), start=1):
            name = f"demo-agent-{index}"
            existing = session.execute(select(agents.Agent).where(agents.Agent.name == name)).scalar_one_or_none()
            if existing is None:
                agents.add_agent(session, name, number, status="available", actor=ACTOR, at=at)
            elif existing.status != "available":
                agents.set_status(session, existing, "available", actor=ACTOR, at=at, reason="demo start")


def _sweep_transfers(engine: Engine, simulator: SimulatorAdapter, now: datetime) -> None:
    """Callers whose hold outlasted the wait get the callback offer (the wait URL does it on Twilio)."""
    from outbound import transfers
    from telephony.simulated_agents import _default_public_url
    with session_scope(engine) as session:
        transfers.sweep(session, at=now, public_url=_default_public_url(), adapter=simulator)


def _transferred(session: Session, campaign_id: int) -> int:
    from outbound.agent_tables import Transfer
    return session.execute(select(func.count()).select_from(Transfer).where(
        Transfer.campaign_id == campaign_id, Transfer.result.in_(("transferred", "agent_joined")))).scalar_one()


def _finished(engine: Engine, campaign_id: int) -> bool:
    with Session(engine) as session:
        status = session.execute(select(Campaign.status).where(Campaign.id == campaign_id)).scalar_one()
        return status == "completed"


def _report(engine: Engine, campaign_id: int, name: str, contacts: int, rejected: int, until: datetime) -> DemoReport:
    report = DemoReport(campaign=name, contacts=contacts, rejected_rows=rejected, simulated_until=until)
    blocked_by, deferred_by = Counter(), Counter()
    with Session(engine) as session:
        decisions = session.execute(
            select(Decision.verdict, Decision.decision).join(Attempt, Attempt.id == Decision.attempt_id)
            .where(Attempt.campaign_id == campaign_id)).all()
        verdicts = Counter()
        for verdict, text in decisions:
            verdicts[verdict] += 1
            codes = {reason["code"] for reason in json.loads(text)["reasons"]}
            (blocked_by if verdict == "block" else deferred_by if verdict == "defer" else Counter()).update(codes)
        outcomes = session.execute(select(Attempt.outcome, func.count()).where(Attempt.campaign_id == campaign_id)
                                   .group_by(Attempt.outcome)).all()
        completed = session.execute(select(func.count()).where(Attempt.campaign_id == campaign_id,
                                                               Attempt.status == "completed")).scalar_one()
        called = session.execute(select(func.count()).where(Attempt.campaign_id == campaign_id,
                                                            Attempt.carrier_id.is_not(None))).scalar_one()
        report.transferred = _transferred(session, campaign_id)
        report.example_blocked = session.execute(
            select(Decision.id).join(Attempt, Attempt.id == Decision.attempt_id)
            .where(Attempt.campaign_id == campaign_id, Decision.verdict == "block")
            .order_by(Decision.decided_at, Decision.id).limit(1)).scalar_one_or_none()
    report.allowed, report.deferred, report.blocked = verdicts["allow"], verdicts["defer"], verdicts["block"]
    report.blocked_by_reason, report.deferred_by_reason = dict(sorted(blocked_by.items())), dict(sorted(deferred_by.items()))
    report.outcomes = {outcome or "none": count for outcome, count in outcomes}
    report.completed = completed
    report.called = called
    return report
