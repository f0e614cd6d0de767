"""Housekeeping: cancel calls still queued at the carrier past their allow; give contacts imported
into a running campaign their first attempt; complete campaigns with nothing left to do.

A carrier queues calls above the account's calls-per-second limit. An allow is only good until
the earliest instant its window closes, so a call still `queued`/`initiated` at the carrier after
`allow_expires_at` is cancelled there and its contact goes back through the gate (a new attempt,
due now: the gate defers it to the next window). A text is not cancelled: once queued at the
carrier it is on its way (Twilio cancels only scheduled messages), and the reaper settles it by
its SM/MM sid.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from datetime import datetime

from sqlalchemy import Engine, select, update

from outbound.campaigns import complete_if_done, create_first_attempts
from outbound.db import session_scope
from outbound.models import Attempt, Campaign
from scheduler.retries import requeue_expired
from telephony.adapter import Adapter, CarrierError

log = logging.getLogger(__name__)

QUEUED_STATUSES = ("queued", "initiated")


@dataclass
class HousekeepingReport:
    expired_cancelled: int = 0
    cancel_refused: int = 0           # the carrier had already started ringing: the call stands
    campaigns_completed: int = 0


def housekeeping(engine: Engine, adapter: Adapter, *, now: datetime) -> HousekeepingReport:
    report = HousekeepingReport()
    expire_queued_calls(engine, adapter, now=now, report=report)
    report.campaigns_completed = complete_finished_campaigns(engine, now=now)
    return report


def expire_queued_calls(engine: Engine, adapter: Adapter, *, now: datetime, report: HousekeepingReport,
                        limit: int = 500) -> None:
    with session_scope(engine) as session:
        rows = session.execute(select(Attempt.id, Attempt.carrier_id).where(
            Attempt.status == "dialing", Attempt.carrier_id.is_not(None), Attempt.channel == "voice",
            Attempt.carrier_status.in_(QUEUED_STATUSES), Attempt.allow_expires_at <= now)
            .order_by(Attempt.allow_expires_at).limit(limit)).all()
    for attempt_id, carrier_id in rows:
        try:
            call = adapter.cancel(carrier_id)
        except CarrierError as error:
            log.info("expiry: carrier would not cancel %s (attempt %s): %s", carrier_id, attempt_id, error)
            report.cancel_refused += 1
            continue
        if call.status not in ("canceled", "cancelled"):
            report.cancel_refused += 1
            continue
        with session_scope(engine) as session:
            changed = session.execute(update(Attempt).where(Attempt.id == attempt_id, Attempt.status == "dialing")
                                      .values(status="cancelled", outcome="expired_in_queue",
                                              carrier_status=call.status, lease_until=None,
                                              error="allow expired while queued at the carrier", updated_at=now)).rowcount
            if changed:
                requeue_expired(session, session.get(Attempt, attempt_id), now)
                report.expired_cancelled += 1


def complete_finished_campaigns(engine: Engine, *, now: datetime) -> int:
    """Running campaigns: contacts imported since the start get their first attempt; a campaign
    with nothing pending, claimed or dialing left is completed."""
    completed = 0
    with session_scope(engine) as session:
        for campaign in session.execute(select(Campaign).where(Campaign.status == "running")).scalars():
            if create_first_attempts(session, campaign, now):
                continue
            completed += complete_if_done(session, campaign, at=now)
    return completed
