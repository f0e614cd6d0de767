"""Pacing of agent campaigns: how many new calls may start now, like a predictive dialer.

Only a share of dialed calls is answered by a person, so with F free agents a dialer that
places F calls leaves agents idle. Placing F / answer_rate calls keeps them busy but, by
chance, sometimes more people answer than there are agents: those calls are abandoned. The
dial ratio is therefore scaled by the headroom left under the abandonment budget (3 % over
30 days): full ratio with the budget untouched, shrinking to one call per free agent as the
rate approaches a safety target below the budget, and exactly one call per free agent once it
is reached (a call that can always be given an agent cannot be abandoned).

`dial_ratio` and `new_dials` are pure; `dial_limit(session, campaign_id, at)` reads their
inputs from the database for dispatch.

The calls-per-second ceiling is the campaign's, whatever the number of workers: each carrier
request first reserves its slot in the campaign's `send_pacing` row (`reserve_send_slot`), which
hands out instants 1/cps apart to every worker in turn. A worker kept that spacing for itself
before, and two PostgreSQL workers together sent 60 in one second against a cps of 50.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, func, select, update
from sqlmodel import Session

MAX_RATIO = 3.0                    # never more than 3 calls per free agent
TARGET_SHARE = 0.6                 # aim at 60 % of the budget: chance spikes stay under it
DEFAULT_ANSWER_RATE = 0.35         # before the campaign has history
MIN_SAMPLE = 20                    # recent dials needed to trust the measured answer rate
ANSWER_WINDOW = timedelta(hours=2)
IN_FLIGHT_STATUSES = (None, "queued", "initiated", "ringing")
# A campaign's next slot further ahead than this was set on another clock (a simulation's, a
# worker whose clock is wrong): claims hand a worker at most a few seconds of sends, so a real
# queue of reservations is never this long. It is started again from the asking worker's now.
MAX_SLOT_AHEAD = timedelta(seconds=30)


@dataclass(frozen=True)
class PacingInput:
    free_agents: int               # agents available now
    in_flight: int                 # calls placed and not yet answered or ended
    answer_rate: float             # share of recent dials a person answered (0..1)
    abandon_rate: float            # over the last 30 days
    budget: float = 0.03
    abandons_left: int | None = None   # abandons the budget still allows at today's volume


def dial_ratio(answer_rate: float, abandon_rate: float, budget: float, abandons_left: int | None = None) -> float:
    """Calls per free agent: 1 / answer_rate with the budget untouched, 1 once it is spent.

    `abandons_left` < 1 also means 1: with few live answers yet (fewer than 34 at 3 %), a single
    abandoned call would already put the rate over the budget."""
    if abandon_rate >= budget * TARGET_SHARE or answer_rate <= 0 or (abandons_left is not None and abandons_left < 1):
        return 1.0
    headroom = 1.0 - abandon_rate / (budget * TARGET_SHARE)
    full = min(MAX_RATIO, 1.0 / max(answer_rate, 1.0 / MAX_RATIO))
    return 1.0 + (full - 1.0) * headroom


def new_dials(pacing: PacingInput) -> int:
    """Calls that may start now: free agents × ratio, less the calls already ringing."""
    if pacing.free_agents <= 0:
        return 0
    ratio = dial_ratio(pacing.answer_rate, pacing.abandon_rate, pacing.budget, pacing.abandons_left)
    if ratio == 1.0:
        # Budget spent (or near): one call per free agent, counting the calls still ringing,
        # so every answer finds an agent.
        return max(0, pacing.free_agents - pacing.in_flight)
    dials = math.floor(pacing.free_agents * ratio) - pacing.in_flight
    if pacing.abandons_left is not None:
        # Calls ringing beyond the free agents are the only ones that can be abandoned: keep them
        # within the abandons the budget has left, so even if every one of them is answered at
        # once the rate stays within budget.
        dials = min(dials, pacing.free_agents + pacing.abandons_left - pacing.in_flight)
    return max(0, dials)


# --- from the database -------------------------------------------------------------------------

def pacing_input(session: Session, campaign_id: int, at: datetime) -> PacingInput | None:
    from outbound import abandonment, agents
    from outbound.models import Attempt, Campaign

    campaign = session.get(Campaign, campaign_id)
    if not abandonment.is_agent_campaign(campaign) or not agents.any_agent_defined(session):
        # No agents defined: nothing to pace by (starting a live campaign without agents is
        # refused, see outbound.campaigns.start_campaign).
        return None
    in_flight = session.execute(select(func.count()).select_from(Attempt).where(
        Attempt.campaign_id == campaign_id, Attempt.status.in_(("claimed", "dialing")),
        Attempt.carrier_status.is_(None) | Attempt.carrier_status.in_(IN_FLIGHT_STATUSES[1:]))).scalar_one()
    rate = abandonment.abandonment_rate(session, campaign, at)
    return PacingInput(free_agents=agents.free_agent_count(session), in_flight=in_flight,
                       answer_rate=_answer_rate(session, campaign_id, at), abandon_rate=rate.rate,
                       budget=rate.budget, abandons_left=rate.remaining)


def _answer_rate(session: Session, campaign_id: int, at: datetime) -> float:
    from outbound.models import Attempt

    recent = (Attempt.campaign_id == campaign_id) & (Attempt.dispatched_at > at - ANSWER_WINDOW) \
        & (Attempt.status == "completed")
    dialed = session.execute(select(func.count()).select_from(Attempt).where(recent)).scalar_one()
    if dialed < MIN_SAMPLE:
        return DEFAULT_ANSWER_RATE
    answered = session.execute(select(func.count()).select_from(Attempt).where(
        recent, Attempt.answered_by == "human")).scalar_one()
    return answered / dialed


def dial_limit(session: Session | Connection, campaign_id: int, at: datetime) -> int | None:
    """New calls the campaign may start now; None when it is not an agent campaign (no limit
    from pacing: its own cps and max_concurrent apply). Takes a Session, or the Connection a
    claim runs on (read in that transaction, so it sees what the claim has locked)."""
    if isinstance(session, Connection):
        with Session(bind=session) as bound:
            return dial_limit(bound, campaign_id, at)
    pacing = pacing_input(session, campaign_id, at)
    return None if pacing is None else new_dials(pacing)


# --- the calls-per-second ceiling, shared by every worker ------------------------------------

def reserve_send_slot(engine: Engine, campaign_id: int, cps: float, at: datetime) -> datetime:
    """The instant at or after `at` from which this worker may make the campaign's next carrier
    request; the campaign's next slot moves on to that instant + 1/cps, in one committed
    conditional update, so workers reserving at once get successive slots, never the same one."""
    return reserve_send_slots(engine, campaign_id, cps, at, 1)[0]


def reserve_send_slots(engine: Engine, campaign_id: int, cps: float, at: datetime, count: int) -> list[datetime]:
    """`count` successive slots (1/cps apart, the first at or after `at`) in one commit: a commit
    per request would cap a worker at the disk's flush rate."""
    from outbound.db import insert_ignoring_duplicates, session_scope
    from outbound.models import SendPacing

    spacing = timedelta(seconds=1.0 / cps)
    row = SendPacing.campaign_id == campaign_id
    with session_scope(engine) as session:
        while True:
            # Compare-and-set on the value read: another worker's reservation in between makes
            # the update match nothing, and this one reads again.
            current = session.execute(select(SendPacing.next_send_at).where(row)).scalar_one_or_none()
            if current is None:
                if insert_ignoring_duplicates(session, SendPacing.__table__,
                                              {"campaign_id": campaign_id, "next_send_at": at + count * spacing}):
                    return [at + n * spacing for n in range(count)]
                continue
            first = at if current <= at or current - at > MAX_SLOT_AHEAD else current
            moved = session.execute(update(SendPacing).where(row, SendPacing.next_send_at == current)
                                    .values(next_send_at=first + count * spacing)).rowcount
            if moved:
                return [first + n * spacing for n in range(count)]
