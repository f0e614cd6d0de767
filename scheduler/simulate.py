"""A dry run of a campaign over simulated time: what the gate would allow, defer and block, by
reason, state and local hour, and when the list would be exhausted. It sends nothing and stores
nothing: the clock is the argument `start`, and every decision is the real gate's.

Each contact is due at `start`. The earliest due contact is decided at the later of its due time
and the next free pacing slot (one per 1/cps seconds): an allow takes the slot and ends the
contact (one attempt each: outcomes and retries are the carrier's, not knowable in advance); a
defer makes it due at `next_allowed_at` (or the campaign's next opening); a block ends it.
"""
from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, select
from sqlmodel import Session

from consent.gate import evaluate
from consent.rules import RulePack
from consent.scenario import iso_utc
from consent.types import Verdict
from consent.windows import zone_info
from outbound.campaigns import campaign_seller, campaign_settings, find_campaign
from outbound.models import Contact
from scheduler import openings
from scheduler.dispatch import attempt_request
from scheduler.facts import NationalRegistry, for_seller, load_batch_facts


@dataclass
class SimulationReport:
    campaign: str
    start: datetime
    until: datetime
    contacts: int = 0
    allowed: int = 0
    blocked: int = 0
    deferrals: int = 0
    not_reached: int = 0
    exhausted_at: datetime | None = None
    blocked_by_reason: Counter = field(default_factory=Counter)
    deferred_by_reason: Counter = field(default_factory=Counter)
    allowed_by_state: Counter = field(default_factory=Counter)
    blocked_by_state: Counter = field(default_factory=Counter)
    allowed_by_local_hour: Counter = field(default_factory=Counter)
    allowed_by_day: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {"campaign": self.campaign, "start": iso_utc(self.start), "until": iso_utc(self.until),
                "contacts": self.contacts, "allowed": self.allowed, "blocked": self.blocked,
                "deferrals": self.deferrals, "not_reached": self.not_reached,
                "exhausted_at": iso_utc(self.exhausted_at),
                "blocked_by_reason": dict(sorted(self.blocked_by_reason.items())),
                "deferred_by_reason": dict(sorted(self.deferred_by_reason.items())),
                "allowed_by_state": dict(sorted(self.allowed_by_state.items())),
                "blocked_by_state": dict(sorted(self.blocked_by_state.items())),
                "allowed_by_local_hour": {f"{hour:02d}": n for hour, n in sorted(self.allowed_by_local_hour.items())},
                "allowed_by_day": dict(sorted(self.allowed_by_day.items()))}


def simulate(engine: Engine, campaign_key: str, *, start: datetime, days: int, pack: RulePack,
             registry: NationalRegistry) -> SimulationReport:
    if start.tzinfo is None:
        raise ValueError("--start needs a time zone, e.g. 2026-11-02T13:00:00Z")
    until = start + timedelta(days=days)
    with Session(engine) as session:
        campaign = find_campaign(session, campaign_key)
        settings = campaign_settings(campaign)
        contacts = list(session.execute(select(Contact).where(Contact.campaign_id == campaign.id)
                                        .order_by(Contact.id)).scalars())
        seller = campaign_seller(campaign)
        facts = {phone: for_seller(found, seller) for phone, found in
                 load_batch_facts(session, [contact.e164 for contact in contacts], start, registry).items()}
        requests = [attempt_request(campaign, contact) for contact in contacts]
    report = SimulationReport(campaign=campaign.name, start=start, until=until, contacts=len(contacts))
    slot = 1.0 / settings.cps
    queue = [(start.timestamp(), index) for index in range(len(contacts))]
    heapq.heapify(queue)
    next_free = start.timestamp()
    while queue:
        due, index = heapq.heappop(queue)
        at_ts = max(due, next_free)
        if at_ts >= until.timestamp():
            report.not_reached += 1 + len(queue)
            break
        at = datetime.fromtimestamp(round(at_ts, 3), timezone.utc)
        request = requests[index]
        decision = evaluate(request, facts[contacts[index].e164], pack, at)
        later = _decide(report, decision, request, settings, at)
        if later is None:
            if decision.verdict is Verdict.ALLOW:
                next_free = at_ts + slot
            continue
        heapq.heappush(queue, (later.timestamp(), index))
    return report


def _decide(report: SimulationReport, decision, request, settings, at: datetime) -> datetime | None:
    """Record the decision; the instant to decide the contact again, or None when it is done."""
    states = request.location.states or ("??",)
    if decision.verdict is Verdict.BLOCK:
        report.blocked += 1
        report.blocked_by_reason.update({reason.code for reason in decision.reasons})
        report.blocked_by_state.update(states)
        return None
    campaign_open = openings.campaign_spans(settings.hours_minutes(), settings.start_date, settings.end_date,
                                            request.location.timezones)
    if decision.verdict is Verdict.DEFER:
        report.deferrals += 1
        report.deferred_by_reason.update({reason.code for reason in decision.reasons})
        return _reopen(campaign_open, decision.next_allowed_at, report)
    opening = openings.next_opening(campaign_open, at)
    if opening != at:
        report.deferrals += 1
        report.deferred_by_reason.update({"campaign_hours"})
        return _reopen(campaign_open, opening, report)
    report.allowed += 1
    report.exhausted_at = at
    report.allowed_by_state.update(states)
    report.allowed_by_local_hour[at.astimezone(zone_info(request.location.timezones[0])).hour] += 1
    report.allowed_by_day[at.date().isoformat()] += 1
    return None


def _reopen(campaign_open, when: datetime | None, report: SimulationReport) -> datetime | None:
    due = openings.next_opening(campaign_open, when) if when else None
    if due is None:
        report.not_reached += 1     # no window or campaign opening left
    return due
