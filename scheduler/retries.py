"""Retries: the next attempt after one ends, per the campaign's retry policy.

`schedule_retry` is called when an attempt ends (by the carrier-event handling, and by the reaper
when it learns the end from the carrier). The new attempt is only `pending`: at its due time it
goes through the gate again, like any attempt, so a retry can never skip a window, a cap or an
opt-out that happened in between.

Creation is idempotent: the (campaign, contact, attempt_no) unique constraint means a webhook
delivered twice, or the webhook and the reaper racing, create one retry.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlmodel import Session

from outbound import audit
from outbound.campaigns import campaign_settings
from outbound.db import insert_ignoring_duplicates
from outbound.models import Attempt, Campaign

RETRYING_CAMPAIGN_STATUSES = ("running", "paused")


def schedule_retry(session: Session, attempt: Attempt, now: datetime) -> Attempt | None:
    """The next attempt for `attempt`'s contact when its outcome has a retry rule and the contact
    has had fewer than the rule's `max_attempts` attempts; None otherwise."""
    campaign = session.get(Campaign, attempt.campaign_id)
    if campaign is None or campaign.status not in RETRYING_CAMPAIGN_STATUSES or not attempt.outcome:
        return None
    rule = campaign_settings(campaign).retry.get(attempt.outcome)
    if rule is None or attempt.attempt_no >= rule.max_attempts:
        return None
    return _next_attempt(session, attempt, due_at=now + timedelta(seconds=rule.delay_seconds), now=now,
                         why=f"retry after {attempt.outcome}")


def requeue_expired(session: Session, attempt: Attempt, now: datetime) -> Attempt | None:
    """A call cancelled in the carrier's queue because its allow expired: a new attempt, due now,
    which the gate will defer to the next window. It does not count against the retry policy's
    intent (no one was reached), but it takes the next attempt number."""
    return _next_attempt(session, attempt, due_at=now, now=now, why="allow expired in carrier queue")


def _next_attempt(session: Session, attempt: Attempt, *, due_at: datetime, now: datetime, why: str) -> Attempt | None:
    number = attempt.attempt_no + 1
    inserted = insert_ignoring_duplicates(session, Attempt.__table__, {
        "campaign_id": attempt.campaign_id, "contact_id": attempt.contact_id, "channel": attempt.channel,
        "status": "pending", "attempt_no": number, "due_at": due_at, "created_at": now, "updated_at": now})
    retry = session.execute(select(Attempt).where(
        Attempt.campaign_id == attempt.campaign_id, Attempt.contact_id == attempt.contact_id,
        Attempt.attempt_no == number)).scalar_one()
    if inserted:
        audit.append(session, actor="scheduler", action="attempt.retry_scheduled", subject=f"attempt:{retry.id}",
                     at=now, payload={"previous_attempt": attempt.id, "attempt_no": number,
                                      "due_at": due_at, "why": why})
    return retry
