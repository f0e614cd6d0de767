"""How a carrier's call status ends an attempt, when the scheduler learns it by asking the carrier.

Webhooks normally deliver the final status (`outbound.carrier_events`); the reaper uses this
module only for attempts whose webhooks never came. The mapping is the same in both places:

    completed            → completed, outcome answered (AMD may refine it), as the webhooks name it
    no-answer / busy     → completed, outcome no-answer / busy     (retry policy applies)
    failed               → failed, outcome failed                  (retry policy applies)
    canceled             → cancelled, outcome canceled
    queued, initiated, ringing, in-progress → still live: the lease is extended

A text is fetched by its SM/MM sid (`apply_message_status`). One still `sent` when its lease ran
out, or one the carrier no longer holds (404), went out: completed, outcome `sent` (many
networks never confirm delivery, and waiting for ever would keep its campaign open).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session

from outbound.models import Attempt
from scheduler.retries import schedule_retry

UNKNOWN = "unknown"
LIVE = "live"
LIVE_STATUSES = frozenset({"queued", "initiated", "ringing", "in-progress", "accepted", "sending", "sent"})
FINAL_STATES = {
    "completed": ("completed", "answered"),
    "delivered": ("completed", "delivered"),
    "no-answer": ("completed", "no-answer"),
    "busy": ("completed", "busy"),
    "failed": ("failed", "failed"),
    "undelivered": ("failed", "failed"),
    "canceled": ("cancelled", "canceled"),
}
MESSAGE_GONE = "gone"                    # the carrier holds no such message any more (404)
MESSAGE_SENT_FINAL = {"sent": ("completed", "sent"), MESSAGE_GONE: ("completed", "sent")}


def apply_carrier_status(session: Session, attempt_id: int, carrier_status: str, *, now: datetime,
                         live_lease: timedelta) -> str | None:
    """Record the carrier's status on a `dialing` attempt. Returns LIVE when the call is still
    going, the final outcome when it ended, None when the attempt was no longer dialing (a
    webhook got there first) or the status is not one we know (left for the next round)."""
    if carrier_status in LIVE_STATUSES:
        changed = session.execute(update(Attempt).where(Attempt.id == attempt_id, Attempt.status == "dialing")
                                  .values(carrier_status=carrier_status, lease_until=now + live_lease,
                                          updated_at=now)).rowcount
        return LIVE if changed else None
    if carrier_status not in FINAL_STATES:
        return None
    return _end(session, attempt_id, carrier_status, *FINAL_STATES[carrier_status], now=now)


def apply_message_status(session: Session, attempt_id: int, message_status: str, *, now: datetime,
                         live_lease: timedelta) -> str | None:
    """As apply_carrier_status, for a text whose lease ran out: `sent`, or gone, ends it as sent."""
    if message_status in MESSAGE_SENT_FINAL:
        status, outcome = MESSAGE_SENT_FINAL[message_status]
        return _end(session, attempt_id, "sent", status, outcome, now=now)
    return apply_carrier_status(session, attempt_id, message_status, now=now, live_lease=live_lease)


def _end(session: Session, attempt_id: int, carrier_status: str, status: str, outcome: str, *,
         now: datetime) -> str | None:
    changed = session.execute(update(Attempt).where(Attempt.id == attempt_id, Attempt.status == "dialing")
                              .values(status=status, outcome=outcome, carrier_status=carrier_status,
                                      claimed_by=None, lease_until=None, last_event_at=now,
                                      updated_at=now)).rowcount
    if not changed:
        return None
    schedule_retry(session, session.get(Attempt, attempt_id, populate_existing=True), now)
    return outcome
