"""What the live campaign panel shows: attempts by state, gate verdicts, answer, transfer and
abandonment rates. Counting queries only (no decision JSON is parsed), so a panel refreshed every
second stays cheap on a big campaign.

Rates, and why these denominators:
- answer rate: answered calls / calls the carrier finished (a call still ringing is not yet a miss);
- transfer rate: transfers an agent joined / answered calls;
- abandonment: `outbound.abandonment.abandonment_rate` (live answers with no agent within 2 s, over
  the last 30 days) against its 3% budget (47 CFR 64.1200(a)(7)): the number dispatch paces by.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import Session

from outbound.abandonment import BUDGET as ABANDONMENT_BUDGET
from outbound.abandonment import abandonment_rate
from outbound.agent_tables import Transfer
from outbound.models import Attempt, Campaign, Decision

ATTEMPT_STATES = ("pending", "claimed", "sending", "dialing", "completed", "failed", "blocked", "cancelled")
FINISHED_CALL_STATES = ("completed", "failed")
JOINED_RESULTS = ("transferred", "agent_joined")


@dataclass(frozen=True)
class LiveCounters:
    attempts: dict[str, int] = field(default_factory=dict)
    allowed: int = 0
    deferred: int = 0
    blocked: int = 0
    finished_calls: int = 0
    answered: int = 0
    transferred: int = 0
    live_answers: int = 0
    abandoned: int = 0

    @property
    def answer_rate(self) -> float | None:
        return self.answered / self.finished_calls if self.finished_calls else None

    @property
    def transfer_rate(self) -> float | None:
        return self.transferred / self.answered if self.answered else None

    @property
    def abandonment_rate(self) -> float | None:
        return self.abandoned / self.live_answers if self.live_answers else None

    @property
    def abandonment_budget(self) -> float:
        return ABANDONMENT_BUDGET

    @property
    def over_budget(self) -> bool:
        rate = self.abandonment_rate
        return rate is not None and rate > ABANDONMENT_BUDGET

    def to_dict(self) -> dict:
        return {**asdict(self), "answer_rate": self.answer_rate, "transfer_rate": self.transfer_rate,
                "abandonment_rate": self.abandonment_rate, "abandonment_budget": ABANDONMENT_BUDGET}


def live_counters(session: Session, campaign_id: int, at: datetime) -> LiveCounters:
    by_status = dict(session.execute(select(Attempt.status, func.count()).where(
        Attempt.campaign_id == campaign_id).group_by(Attempt.status)).all())
    attempts = {state: by_status.get(state, 0) for state in ATTEMPT_STATES}
    attempts.update({state: count for state, count in by_status.items() if state not in attempts})
    of_campaign = select(Attempt.id).where(Attempt.campaign_id == campaign_id)
    verdicts = dict(session.execute(select(Decision.verdict, func.count()).where(
        Decision.attempt_id.in_(of_campaign)).group_by(Decision.verdict)).all())
    finished, answered = session.execute(select(
        func.count(), func.count().filter(Attempt.outcome == "answered")).where(
        Attempt.campaign_id == campaign_id, Attempt.carrier_id.is_not(None),
        Attempt.status.in_(FINISHED_CALL_STATES))).one()
    transferred = session.execute(select(func.count()).select_from(Transfer).where(
        Transfer.campaign_id == campaign_id, Transfer.result.in_(JOINED_RESULTS))).scalar_one()
    abandonment = abandonment_rate(session, session.get(Campaign, campaign_id), at)
    return LiveCounters(attempts=attempts, allowed=verdicts.get("allow", 0), deferred=verdicts.get("defer", 0),
                        blocked=verdicts.get("block", 0), finished_calls=finished, answered=answered,
                        transferred=transferred, live_answers=abandonment.live_answers,
                        abandoned=abandonment.abandoned)
