"""Abandoned calls of agent campaigns, and the rate the pacing holds under the 3 % budget.

47 CFR 64.1200(a)(7): a call answered by a person that is not connected to a sales
representative within two seconds of the greeting is abandoned; the seller's identification
(with a number to call back and a way to opt out) must then play. At most 3 % of the calls a
campaign answers live may be abandoned, measured over 30 days.

An agent campaign is one whose voice is `live`: a person answers and an agent talks. Each live
answer is a `LiveAnswer` row, greeted at the instant the transfer began. Abandoned: no agent
joined by greeting + 2 s (settled when the agent joins, when the caller leaves, or when no agent
will come; a row still open past its two seconds already counts).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlmodel import Session

from outbound.agent_tables import LiveAnswer
from outbound.models import Attempt, Campaign

CONNECT_WITHIN = timedelta(seconds=2)
WINDOW = timedelta(days=30)
BUDGET = 0.03


def is_agent_campaign(campaign: Campaign | None) -> bool:
    return campaign is not None and campaign.channel == "voice" and campaign.voice == "live"


def record_live_answer(session: Session, attempt: Attempt, *, greeted_at: datetime) -> LiveAnswer:
    """Idempotent per attempt: a repeated transfer request keeps the first greeting."""
    row = session.execute(select(LiveAnswer).where(LiveAnswer.attempt_id == attempt.id)).scalar_one_or_none()
    if row is None:
        row = LiveAnswer(attempt_id=attempt.id, campaign_id=attempt.campaign_id, greeted_at=greeted_at)
        session.add(row)
        session.flush()
    return row


def _row(session: Session, attempt_id: int) -> LiveAnswer | None:
    return session.execute(select(LiveAnswer).where(LiveAnswer.attempt_id == attempt_id)).scalar_one_or_none()


def agent_connected(session: Session, attempt_id: int, at: datetime) -> None:
    row = _row(session, attempt_id)
    if row is not None and row.agent_at is None:
        row.agent_at, row.abandoned = at, at - row.greeted_at > CONNECT_WITHIN
        session.add(row)


def no_agent(session: Session, attempt_id: int, at: datetime) -> None:
    row = _row(session, attempt_id)
    if row is not None and row.abandoned is None:
        row.abandoned = True
        session.add(row)


def mark_identified(session: Session, attempt_id: int) -> None:
    """The identification message played to this live answer (it does for every held caller,
    so an abandoned live answer is always identified)."""
    row = _row(session, attempt_id)
    if row is not None and not row.identified:
        row.identified = True
        session.add(row)


@dataclass(frozen=True)
class AbandonmentRate:
    campaign_id: int
    agent_campaign: bool
    since: datetime
    until: datetime
    live_answers: int
    abandoned: int
    rate: float
    budget: float
    remaining: int                  # abandons still allowed at the current volume

    @property
    def spent(self) -> bool:
        return self.rate >= self.budget

    def as_dict(self) -> dict:
        data = asdict(self)
        data["since"], data["until"] = self.since.isoformat(), self.until.isoformat()
        data["spent"] = self.spent
        return data


def abandonment_rate(session: Session, campaign: Campaign, at: datetime) -> AbandonmentRate:
    since = at - WINDOW
    in_window = and_(LiveAnswer.campaign_id == campaign.id, LiveAnswer.greeted_at > since,
                     LiveAnswer.greeted_at <= at)
    live = session.execute(select(func.count()).select_from(LiveAnswer).where(in_window)).scalar_one()
    abandoned = session.execute(select(func.count()).select_from(LiveAnswer).where(
        in_window, or_(LiveAnswer.abandoned.is_(True),
                       and_(LiveAnswer.abandoned.is_(None), LiveAnswer.greeted_at <= at - CONNECT_WITHIN))
    )).scalar_one()
    rate = abandoned / live if live else 0.0
    remaining = max(0, int(BUDGET * live + 1e-9) - abandoned)
    return AbandonmentRate(campaign.id, is_agent_campaign(campaign), since, at, live, abandoned, round(rate, 6),
                           BUDGET, remaining)
