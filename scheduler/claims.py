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

The reaper returns expired claims to `pending`, so they go back to the gate (a claimed attempt,
allowed or not, was never sent to a carrier: dispatch commits `sending` before it calls the
carrier). An attempt is never re-sent blindly:

- `sending` (or `dialing`) without a carrier id: the worker stopped between marking it and
  recording the carrier's answer. It is looked up at the carrier, by number and start time
  (`Adapter.find_calls` / `find_messages`, from the same caller ID, and for a text the same
  body, not already another attempt's). One match: the carrier id is recorded and its status
  applied. No match once the callback window has passed since the request: the carrier never
  took it, and it goes back to the gate. No match sooner: asked again next round. Several
  matches: failed, outcome `unknown`, for review (`AMBIGUOUS_LOOKUP_ERROR`). Every lookup that
  settles an attempt is an audit event (`attempt.carrier_lookup`) with what the carrier listed;
- `dialing` with a carrier id whose lease ran out: fetched by that id, a call with
  `fetch_call`, a text (SM/MM sid) with `fetch_message`.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, bindparam, func, select, text, update
from sqlmodel import Session

from outbound import audit
from outbound.campaigns import campaign_settings
from outbound.db import session_scope
from outbound.models import Attempt, Campaign, Contact
from scheduler import outcomes
from scheduler.pacing import dial_limit
from telephony.adapter import Adapter, CarrierCall, CarrierError, is_message_sid

log = logging.getLogger(__name__)

UNKNOWN_OUTCOME_ERROR = ("needs_review: the worker stopped after the allow was committed and before "
                         "the carrier answered; a call may or may not have been placed, so it is "
                         "not dialed again")
AMBIGUOUS_LOOKUP_ERROR = ("needs_review: the carrier lists several unrecorded {what} to this number from "
                          "this caller ID since the request ({sids}); which one is this attempt's cannot "
                          "be told, so it is not sent again")
# The carrier's clock and ours differ a little: look from a bit before our request.
LOOKUP_SLACK = timedelta(seconds=60)
SENDING_STATUSES = ("sending", "dialing")
ACTOR = "scheduler"


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
                                                   Attempt.status.in_(("claimed", "sending", "dialing")))
        .group_by(Attempt.status)).all())
    in_flight = counts.get("claimed", 0) + counts.get("sending", 0) + counts.get("dialing", 0)
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
    unknown: int = 0                       # several carrier records could be it: for review
    found_at_carrier: int = 0              # `sending` without an id: the carrier's record found
    back_to_gate: int = 0                  # `sending`: the carrier has no record after the window
    awaiting_lookup: int = 0               # `sending`: no record yet, inside the callback window
    fetch_errors: int = 0


def reap(engine: Engine, adapter: Adapter, *, now: datetime, call_lease_seconds: float,
         callback_window_seconds: float = 300) -> ReapReport:
    report = ReapReport(released=release_expired_claims(engine, now))
    reconcile_unrecorded(engine, adapter, now=now, call_lease_seconds=call_lease_seconds,
                         callback_window=timedelta(seconds=callback_window_seconds), report=report)
    reconcile_expired_dialing(engine, adapter, now=now, call_lease_seconds=call_lease_seconds, report=report)
    return report


def release_expired_claims(engine: Engine, now: datetime) -> int:
    """Claimed attempts whose worker's lease ran out go back to pending, due as before, and so
    back to the gate: an allow given to a claim that was never sent is void."""
    with session_scope(engine) as session:
        return session.execute(update(Attempt).where(Attempt.status == "claimed", Attempt.lease_until < now)
                               .values(status="pending", claimed_by=None, lease_until=None,
                                       allow_expires_at=None, dispatched_at=None,
                                       updated_at=now)).rowcount


@dataclass(frozen=True)
class _Unrecorded:
    attempt_id: int
    channel: str
    to: str
    from_: str | None
    body: str | None
    sent_at: datetime


def reconcile_unrecorded(engine: Engine, adapter: Adapter, *, now: datetime, call_lease_seconds: float,
                         callback_window: timedelta, report: ReapReport, limit: int = 500) -> None:
    """`sending` (or `dialing`) attempts without a carrier id whose lease ran out: look them up
    at the carrier, never re-send them blindly (see the module docstring)."""
    for item in _unrecorded(engine, now, limit):
        try:
            listed = _lookup(adapter, item)
        except Exception as error:            # the carrier is down or slow: try next round
            log.warning("reaper: looking up attempt %s at the carrier failed: %s", item.attempt_id, error)
            report.fetch_errors += 1
            continue
        with session_scope(engine) as session:
            _settle(session, item, listed, now=now, live_lease=timedelta(seconds=call_lease_seconds),
                    callback_window=callback_window, report=report)


def _unrecorded(engine: Engine, now: datetime, limit: int) -> list[_Unrecorded]:
    statement = (select(Attempt.id, Attempt.channel, Contact.e164, Campaign.caller_id, Campaign.script,
                        Attempt.updated_at)
                 .join(Contact, Contact.id == Attempt.contact_id).join(Campaign, Campaign.id == Attempt.campaign_id)
                 .where(Attempt.status.in_(SENDING_STATUSES), Attempt.carrier_id.is_(None),
                        Attempt.lease_until < now)
                 .order_by(Attempt.lease_until).limit(limit))
    with engine.connect() as connection:
        return [_Unrecorded(row.id, row.channel, row.e164, row.caller_id, row.script,
                            row.updated_at)         # the sending mark's instant
                for row in connection.execute(statement)]


def _lookup(adapter: Adapter, item: _Unrecorded) -> list[CarrierCall]:
    """What the carrier holds that could be this attempt's request: to its number, from its
    caller ID, since (about) the request; a text with the same body."""
    since = item.sent_at - LOOKUP_SLACK
    if item.channel == "sms":
        found = [m for m in adapter.find_messages(item.to, since) if m.extra.get("body") in (None, item.body)]
    else:
        found = adapter.find_calls(item.to, since)
    return [record for record in found if record.extra.get("from") in (None, item.from_)]


def _settle(session: Session, item: _Unrecorded, listed: list[CarrierCall], *, now: datetime,
            live_lease: timedelta, callback_window: timedelta, report: ReapReport) -> None:
    candidates = _not_recorded_elsewhere(session, listed)
    payload = {"to": item.to, "since": (item.sent_at - LOOKUP_SLACK).isoformat(),
               "listed": sorted(record.sid for record in listed),
               "candidates": sorted(record.sid for record in candidates)}
    if not candidates and now < item.sent_at + callback_window:
        report.awaiting_lookup += 1          # the carrier may list it yet (queue, indexing lag)
        return
    where = (Attempt.id == item.attempt_id, Attempt.status.in_(SENDING_STATUSES), Attempt.carrier_id.is_(None))
    if len(candidates) == 1:
        record = candidates[0]
        changed = session.execute(update(Attempt).where(*where).values(
            status="dialing", carrier_id=record.sid, carrier_status=None, outcome=None, error=None,
            claimed_by=None, lease_until=now + live_lease, updated_at=now)).rowcount
        if changed:
            report.found_at_carrier += 1
            _audit_lookup(session, item, now, {**payload, "settled": "found", "carrier_id": record.sid})
            apply = outcomes.apply_message_status if item.channel == "sms" else outcomes.apply_carrier_status
            apply(session, item.attempt_id, record.status, now=now, live_lease=live_lease)
        return
    if not candidates:
        changed = session.execute(update(Attempt).where(*where).values(
            status="pending", due_at=now, claimed_by=None, lease_until=None, allow_expires_at=None,
            dispatched_at=None, error="carrier has no record of the request: back to the gate",
            updated_at=now)).rowcount
        if changed:
            report.back_to_gate += 1
            _audit_lookup(session, item, now, {**payload, "settled": "not_found: back to the gate"})
        return
    what = "texts" if item.channel == "sms" else "calls"
    changed = session.execute(update(Attempt).where(*where).values(
        status="failed", outcome=outcomes.UNKNOWN, claimed_by=None, lease_until=None, updated_at=now,
        error=AMBIGUOUS_LOOKUP_ERROR.format(what=what, sids=", ".join(payload["candidates"]))[:2000])).rowcount
    if changed:
        report.unknown += 1
        _audit_lookup(session, item, now, {**payload, "settled": "ambiguous: unknown"})


def _not_recorded_elsewhere(session: Session, listed: list[CarrierCall]) -> list[CarrierCall]:
    if not listed:
        return []
    taken = set(session.execute(select(Attempt.carrier_id).where(
        Attempt.carrier_id.in_([record.sid for record in listed]))).scalars())
    return [record for record in listed if record.sid not in taken]


def _audit_lookup(session: Session, item: _Unrecorded, now: datetime, payload: dict) -> None:
    audit.append(session, actor=ACTOR, action="attempt.carrier_lookup", subject=f"attempt#{item.attempt_id}",
                 at=now, payload=payload)


def reconcile_expired_dialing(engine: Engine, adapter: Adapter, *, now: datetime, call_lease_seconds: float,
                              report: ReapReport, limit: int = 500) -> None:
    """Dialing attempts with a carrier id whose lease ran out (their webhooks were lost or are
    late): ask the carrier by id (a call's CA sid, a text's SM/MM sid) and record what it says."""
    with session_scope(engine) as session:
        rows = session.execute(select(Attempt.id, Attempt.carrier_id).where(
            Attempt.status == "dialing", Attempt.carrier_id.is_not(None), Attempt.lease_until < now)
            .order_by(Attempt.lease_until).limit(limit)).all()
    live_lease = timedelta(seconds=call_lease_seconds)
    for attempt_id, carrier_id in rows:
        try:
            status = _carrier_status(adapter, carrier_id)
        except Exception as error:            # the carrier is down or slow: try next round
            log.warning("reaper: fetching %s for attempt %s failed: %s", carrier_id, attempt_id, error)
            report.fetch_errors += 1
            continue
        apply = outcomes.apply_message_status if is_message_sid(carrier_id) else outcomes.apply_carrier_status
        with session_scope(engine) as session:
            applied = apply(session, attempt_id, status, now=now, live_lease=live_lease)
        if applied == outcomes.LIVE:
            report.still_live += 1
        elif applied:
            report.reconciled[status] = report.reconciled.get(status, 0) + 1


def _carrier_status(adapter: Adapter, carrier_id: str) -> str:
    if not is_message_sid(carrier_id):
        return adapter.fetch_call(carrier_id).status
    try:
        return adapter.fetch_message(carrier_id).status
    except CarrierError as error:
        if error.status == 404:
            return outcomes.MESSAGE_GONE     # Twilio no longer holds it: it was sent
        raise
