"""Claiming due attempts across worker processes, and the lease reaper.

A claim moves attempts `pending → claimed`, stamping `claimed_by` and `lease_until`:

- PostgreSQL: one `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING id`, so two
  workers never take the same row and never wait on each other's rows;
- SQLite: the same statement inside `BEGIN IMMEDIATE`, which makes this process the only writer
  until it commits.

Pacing is decided in the same transaction: each running campaign gets at most
`max_concurrent − (claimed + dialing)` and at most `cps × window − (dispatched in the last
window) − claimed` attempts, and an agent campaign (live voice) no more than
`scheduler.pacing.dial_limit` allows: free agents and the 3% abandonment budget. On PostgreSQL the
campaign row is locked (FOR UPDATE) while its budget is computed and spent, so two workers cannot
both spend the same budget.

The reaper returns expired claims to `pending` (a claimed attempt was never sent to a carrier:
dispatch commits `dialing` before it calls the carrier). An expired `dialing` attempt is never
re-sent: with a carrier id its state is fetched from the carrier; without one the worker stopped
between committing the allow and hearing back from the carrier, so a call may or may not exist,
and the attempt is marked failed with outcome `unknown` for review (see `UNKNOWN_OUTCOME_ERROR`).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, bindparam, func, select, text, update

from outbound.campaigns import campaign_settings
from outbound.db import session_scope
from outbound.models import Attempt, Campaign
from scheduler import outcomes
from scheduler.pacing import dial_limit
from telephony.adapter import Adapter

log = logging.getLogger(__name__)

UNKNOWN_OUTCOME_ERROR = ("needs_review: the worker stopped after the allow was committed and before "
                         "the carrier answered; a call may or may not have been placed, so it is "
                         "not dialed again")


# --- claiming ---------------------------------------------------------------------------------

def claim_due(engine: Engine, *, worker_id: str, now: datetime, limit: int, lease_seconds: float,
              pacing_window_seconds: float) -> list[int]:
    """Claim up to `limit` due attempts of running campaigns, within each campaign's pacing
    budget; returns their ids, oldest due first within each campaign."""
    lease_until = now + timedelta(seconds=lease_seconds)
    claimed: list[int] = []
    for campaign_id in _running_campaigns_with_due_work(engine, now):
        if len(claimed) >= limit:
            break
        claimed.extend(_claim_for_campaign(engine, campaign_id, worker_id=worker_id, now=now,
                                           limit=limit - len(claimed), lease_until=lease_until,
                                           window=pacing_window_seconds))
    return claimed


def _running_campaigns_with_due_work(engine: Engine, now: datetime) -> list[int]:
    statement = (select(Attempt.campaign_id).join(Campaign, Campaign.id == Attempt.campaign_id)
                 .where(Campaign.status == "running", Attempt.status == "pending", Attempt.due_at <= now)
                 .group_by(Attempt.campaign_id).order_by(func.min(Attempt.due_at)))
    with engine.connect() as connection:
        return list(connection.execute(statement).scalars())


def _claim_for_campaign(engine: Engine, campaign_id: int, *, worker_id: str, now: datetime, limit: int,
                        lease_until: datetime, window: float) -> list[int]:
    with engine.connect() as connection:
        _begin_write(connection)
        try:
            campaign = _lock_running_campaign(connection, campaign_id)
            if campaign is None:
                connection.rollback()
                return []
            slots = min(limit, pacing_slots(connection, campaign, now, window))
            agent_limit = dial_limit(connection, campaign_id, now)     # agent campaigns: free agents, 3%
            if agent_limit is not None:
                slots = min(slots, agent_limit)
            ids = _claim_statement(connection, campaign_id, worker_id, now, lease_until, slots) if slots > 0 else []
            connection.commit()
            return ids
        except BaseException:
            connection.rollback()
            raise


def _begin_write(connection: Connection) -> None:
    # SQLite: take the write lock now, not at the first write, so the budget read below cannot
    # be overtaken by another process's claim. PostgreSQL: the row locks below do that.
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _lock_running_campaign(connection: Connection, campaign_id: int):
    statement = select(Campaign).where(Campaign.id == campaign_id, Campaign.status == "running")
    if connection.dialect.name == "postgresql":
        statement = statement.with_for_update()
    return connection.execute(statement).one_or_none()


def pacing_slots(connection: Connection, campaign, now: datetime, window: float) -> int:
    """How many more attempts of the campaign may be claimed now.

    Concurrency: lines in use are the claimed and dialing attempts. Rate: no more than
    cps × window attempts handed to the carrier per window (a window of at least 1/cps seconds,
    so a campaign slower than one call per tick still gets its call)."""
    settings = campaign_settings(campaign)
    window = max(window, 1.0 / settings.cps)
    counts = dict(connection.execute(
        select(Attempt.status, func.count()).where(Attempt.campaign_id == campaign.id,
                                                   Attempt.status.in_(("claimed", "dialing")))
        .group_by(Attempt.status)).all())
    in_flight = counts.get("claimed", 0) + counts.get("dialing", 0)
    recent = connection.execute(select(func.count()).select_from(Attempt).where(
        Attempt.campaign_id == campaign.id,
        Attempt.dispatched_at > now - timedelta(seconds=window))).scalar_one()
    rate_slots = math.floor(settings.cps * window + 1e-9) - recent - counts.get("claimed", 0)
    return max(0, min(settings.max_concurrent - in_flight, rate_slots))


_CLAIM_SQL = """
UPDATE attempts SET status = 'claimed', claimed_by = :worker, lease_until = :lease_until,
                    updated_at = :now
WHERE id IN (SELECT id FROM attempts
             WHERE campaign_id = :campaign_id AND status = 'pending' AND due_at <= :now
             ORDER BY due_at, id LIMIT :slots{lock})
RETURNING id, due_at
"""


def _claim_statement(connection: Connection, campaign_id: int, worker_id: str, now: datetime,
                     lease_until: datetime, slots: int) -> list[int]:
    lock = " FOR UPDATE SKIP LOCKED" if connection.dialect.name == "postgresql" else ""
    due_type = Attempt.__table__.c.due_at.type
    statement = text(_CLAIM_SQL.format(lock=lock)).bindparams(
        bindparam("now", type_=due_type), bindparam("lease_until", type_=due_type))
    rows = connection.execute(statement, {"worker": worker_id, "lease_until": lease_until, "now": now,
                                          "campaign_id": campaign_id, "slots": slots}).all()
    # RETURNING order is not guaranteed: restore due order, the order dispatch works in.
    return [row.id for row in sorted(rows, key=lambda row: (row.due_at, row.id))]


def release_claims(engine: Engine, ids: list[int], *, worker_id: str, now: datetime,
                   due_at: datetime | None = None, error: str | None = None) -> int:
    """Hand this worker's claimed attempts back to the queue (optionally due later)."""
    if not ids:
        return 0
    values: dict = {"status": "pending", "claimed_by": None, "lease_until": None, "updated_at": now}
    if due_at is not None:
        values["due_at"] = due_at
    if error is not None:
        values["error"] = error
    with session_scope(engine) as session:
        return session.execute(update(Attempt).where(
            Attempt.id.in_(ids), Attempt.status == "claimed", Attempt.claimed_by == worker_id)
            .values(**values)).rowcount


# --- the reaper -------------------------------------------------------------------------------

@dataclass
class ReapReport:
    released: int = 0                      # expired claims back to pending
    reconciled: dict[str, int] = field(default_factory=dict)   # carrier status -> attempts
    still_live: int = 0                    # carrier says the call is still going: lease extended
    unknown: int = 0                       # no carrier id: marked for review, not re-dialed
    fetch_errors: int = 0


def reap(engine: Engine, adapter: Adapter, *, now: datetime, call_lease_seconds: float) -> ReapReport:
    report = ReapReport(released=release_expired_claims(engine, now))
    report.unknown = mark_unknown_outcomes(engine, now)
    reconcile_expired_dialing(engine, adapter, now=now, call_lease_seconds=call_lease_seconds, report=report)
    return report


def release_expired_claims(engine: Engine, now: datetime) -> int:
    """Claimed attempts whose worker's lease ran out go back to pending, due as before."""
    with session_scope(engine) as session:
        return session.execute(update(Attempt).where(Attempt.status == "claimed", Attempt.lease_until < now)
                               .values(status="pending", claimed_by=None, lease_until=None,
                                       updated_at=now)).rowcount


def mark_unknown_outcomes(engine: Engine, now: datetime) -> int:
    """Expired `dialing` attempts without a carrier id: failed, outcome `unknown`, not re-sent.

    Re-dialing could call a person twice (the carrier may have accepted the call just before the
    worker died) and would count twice against the caps; losing one attempt is the safe side.
    `outbound campaign status` counts them, and the carrier's call log can settle each one: a
    status callback carrying the attempt id still updates it."""
    with session_scope(engine) as session:
        return session.execute(update(Attempt).where(
            Attempt.status == "dialing", Attempt.carrier_id.is_(None), Attempt.lease_until < now)
            .values(status="failed", outcome=outcomes.UNKNOWN, error=UNKNOWN_OUTCOME_ERROR,
                    claimed_by=None, lease_until=None, updated_at=now)).rowcount


def reconcile_expired_dialing(engine: Engine, adapter: Adapter, *, now: datetime, call_lease_seconds: float,
                              report: ReapReport, limit: int = 500) -> None:
    """Dialing attempts with a carrier id whose lease ran out (their webhooks were lost or are
    late): ask the carrier by id and record what it says."""
    with session_scope(engine) as session:
        rows = session.execute(select(Attempt.id, Attempt.carrier_id).where(
            Attempt.status == "dialing", Attempt.carrier_id.is_not(None), Attempt.lease_until < now)
            .order_by(Attempt.lease_until).limit(limit)).all()
    for attempt_id, carrier_id in rows:
        try:
            call = adapter.fetch_call(carrier_id)
        except Exception as error:            # the carrier is down or slow: try next round
            log.warning("reaper: fetching %s for attempt %s failed: %s", carrier_id, attempt_id, error)
            report.fetch_errors += 1
            continue
        with session_scope(engine) as session:
            applied = outcomes.apply_carrier_status(session, attempt_id, call.status, now=now,
                                                    live_lease=timedelta(seconds=call_lease_seconds))
        if applied == outcomes.LIVE:
            report.still_live += 1
        elif applied:
            report.reconciled[call.status] = report.reconciled.get(call.status, 0) + 1
