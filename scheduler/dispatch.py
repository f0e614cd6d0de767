"""One dispatch tick: claim a batch, load its facts once, ask the gate, store, then dial.

Order of events for one attempt, and why:

1. claim (`scheduler.claims`): the attempt is this worker's until its lease ends;
2. facts for the whole batch in one go; any error → nothing of the batch is decided or dialed,
   the claims go back to the queue a little later (fail closed);
3. the gate decides; campaign hours are applied after it and can only narrow (a gate allow
   outside the campaign's hours becomes a wait for the next opening);
4. one transaction for the batch stores every decision with its audit event and moves each
   attempt on: block → `blocked`; defer → `pending`, due at `next_allowed_at`; allow → still
   `claimed`, with `allow_expires_at` and a lease that covers the sending. The move is
   conditional on the attempt still being `claimed` by this worker, so a campaign stopped
   meanwhile or a lease reaped meanwhile wins;
5. COMMIT; then, for each allowed attempt in turn, one committed step just before its carrier
   request: `claimed → sending` (conditional, as above), together with the last check: a
   revocation or internal do-not-call entry for the number recorded since the batch was decided
   sends nothing and has the attempt decided again by the gate on fresh facts (so the block
   carries its real reason and replays);
6. the carrier request; the carrier id is recorded (`sending → dialing`) as soon as it answers
   (in small groups, see `_CarrierIds`). Every callback URL names the attempt (`?attempt=ID`),
   so a callback that comes before the id is recorded still finds its attempt.

After a crash (see `scheduler.claims.reap`): an attempt still `claimed` was never sent and goes
back to the gate; one `sending` without a carrier id is looked up at the carrier (by number and
start time), never re-sent blindly, and goes back to the gate only when the carrier holds no
record of it once the callback window has passed.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import Engine, bindparam, select, union, update
from sqlmodel import Session

from consent.gate import evaluate
from consent.tables import DncEntry, Revocation
from consent.location import default_zone_overrides, location_under, prefix_facts
from consent.rules import RulePack
from consent.scenario import decision_to_dict, scenario_to_dict
from consent.types import (
    AttemptRequest, Channel, Decision, Facts, LineType, Location, PriorAttempt, Purpose, Verdict, VoiceKind,
)
from outbound.campaigns import CampaignSettings, campaign_seller, campaign_settings
from outbound.db import retry_on_busy, session_scope
from outbound.decisions import NewDecision, store_decisions
from outbound.models import Attempt, Campaign, Contact
from scheduler import claims, openings
from scheduler.pacing import reserve_send_slots
from scheduler.facts import NationalRegistry, for_seller, journaled_revocations, load_batch_facts
from telephony.adapter import Adapter, CallRequest, CarrierCall, CarrierError, SmsRequest

log = logging.getLogger(__name__)

ACTOR = "scheduler"


@dataclass(frozen=True)
class CallbackUrls:
    """Where the carrier fetches what to say and posts events (the webhook routes)."""

    base: str = "http://localhost:8000"

    def twiml(self, attempt_id: int) -> str:
        return f"{self.base}/v1/twilio/voice/{attempt_id}"

    # Each callback URL names its attempt: the webhook route merges the (signed) query into the
    # event, so a callback that arrives before the carrier id is recorded still finds it.
    def status(self, attempt_id: int) -> str:
        return f"{self.base}/v1/twilio/call-status?attempt={attempt_id}"

    def sms_status(self, attempt_id: int) -> str:
        return f"{self.base}/v1/twilio/sms-status?attempt={attempt_id}"

    def amd(self, attempt_id: int) -> str:
        return f"{self.base}/v1/twilio/amd?attempt={attempt_id}"


@dataclass(frozen=True)
class DispatchConfig:
    batch_size: int = 100
    lease_seconds: float = 60             # a claim not decided within this goes back to the queue
    send_lease_seconds: float = 120       # an allow or a `sending` mark not settled within this is reaped
    call_lease_seconds: float = 1800      # after this without a final webhook, ask the carrier
    callback_window_seconds: float = 300  # a `sending` attempt the carrier has no record of this
                                          # long after the request goes back to the gate
    pacing_window_seconds: float = 2.0    # the dispatch interval: the rate budget's period
    facts_retry_seconds: float = 60       # a batch whose facts failed to load waits this long
    callbacks: CallbackUrls = CallbackUrls()

    def __post_init__(self) -> None:
        # A worker sends a marked attempt only within its sending lease; the reaper hands one the
        # carrier has no record of back to the gate only after the callback window. The window
        # must outlast the lease, or a slow worker and the next one could both send it.
        if self.callback_window_seconds <= self.send_lease_seconds:
            raise ValueError(f"callback_window_seconds ({self.callback_window_seconds}) must be longer than "
                             f"send_lease_seconds ({self.send_lease_seconds})")


@dataclass
class DispatchReport:
    claimed: int = 0
    allowed: int = 0
    deferred: int = 0
    blocked: int = 0
    waiting_for_campaign_hours: int = 0
    ended: int = 0                        # no opening left (campaign end date passed)
    dialed: int = 0
    carrier_failed: int = 0
    unknown: int = 0
    expired_before_send: int = 0
    blocked_before_send: int = 0          # the last check found an opt-out since the decision
    lost_claims: int = 0                  # no longer ours at decision time (stopped, reaped)
    facts_error: str | None = None
    decision_ids: list[str] = field(default_factory=list)

    def add(self, other: DispatchReport) -> None:
        """Count another round of the same tick in."""
        for name, value in vars(other).items():
            if isinstance(value, int):
                setattr(self, name, getattr(self, name) + value)
        self.facts_error = other.facts_error or self.facts_error
        self.decision_ids.extend(other.decision_ids)

    @property
    def gate_held_back(self) -> int:
        """Claimed attempts the gate (or the campaign's hours and dates) kept from the carrier."""
        return self.deferred + self.blocked + self.waiting_for_campaign_hours + self.ended


@dataclass(frozen=True)
class _Row:
    attempt: Attempt
    contact: Contact
    campaign: Campaign


@dataclass(frozen=True)
class _ToSend:
    """What the carrier request needs, copied out of the session (its rows expire at commit),
    and what the gate needs to decide it again if the last check finds an opt-out."""

    attempt_id: int
    campaign_id: int
    channel: str
    to: str
    from_: str
    body: str
    cps: float
    expires_at: datetime
    decided_at: datetime
    request: AttemptRequest
    seller: str
    settings: CampaignSettings


def dispatch_once(engine: Engine, adapter: Adapter, *, worker_id: str, now: datetime, pack: RulePack,
                  registry: NationalRegistry, config: DispatchConfig = DispatchConfig(),
                  batch_size: int | None = None, sleep: Callable[[float], None] = time.sleep,
                  monotonic: Callable[[], float] = time.monotonic) -> DispatchReport:
    report = DispatchReport()
    # `now` is this instant: the send slots (shared by every worker) are on the same clock, so
    # elapsed time is counted from here, the claim and the decisions included.
    tick_started = monotonic()
    # Every committed step below waits out another writer's lock (SQLite: a list import) within
    # retry_on_busy's bound instead of ending the tick with part of a batch unsent.
    ids = retry_on_busy(lambda: claims.claim_due(
        engine, worker_id=worker_id, now=now, limit=batch_size or config.batch_size,
        lease_seconds=config.lease_seconds, pacing_window_seconds=config.pacing_window_seconds),
        what="dispatch: claiming")
    report.claimed = len(ids)
    if not ids:
        return report
    try:
        to_send = _decide_batch_retrying(engine, ids, worker_id=worker_id, now=now, pack=pack, registry=registry,
                                         config=config, report=report)
    except _FactsUnavailable as error:
        report.facts_error = str(error)
        log.error("dispatch: facts could not be loaded, %d attempts not decided: %s", len(ids), error)
        retry_on_busy(lambda: claims.release_claims(engine, ids, worker_id=worker_id, now=now,
                                                    due_at=now + timedelta(seconds=config.facts_retry_seconds)),
                      what="dispatch: releasing claims")
        return report
    sender = _Sender(engine, adapter, worker_id=worker_id, pack=pack, registry=registry, config=config,
                     report=report, upcoming=to_send)
    _send_all(sender, to_send, now=now, sleep=sleep, monotonic=monotonic, started=tick_started)
    return report


def dispatch_tick(engine: Engine, adapter: Adapter, *, worker_id: str, clock: Callable[[], datetime],
                  pack: RulePack, registry: NationalRegistry, config: DispatchConfig = DispatchConfig()) -> DispatchReport:
    """dispatch_once again while a round only held attempts back, up to one batch per tick.

    The pacing budget counts lines in use and calls handed to the carrier; an attempt the gate
    defers or blocks uses neither, so its slot is free again at once. Without another round a
    campaign at 1 call per second would take a second per deferral at night. A round that dialed
    ends the tick, so calls stay spaced at 1/cps; so does any carrier failure, unknown outcome,
    facts error or lost claim (at once, they would only happen again).
    """
    total = DispatchReport()
    while total.claimed < config.batch_size:
        report = dispatch_once(engine, adapter, worker_id=worker_id, now=clock(), pack=pack, registry=registry,
                               config=config, batch_size=config.batch_size - total.claimed)
        total.add(report)
        if (report.dialed or not report.gate_held_back or report.carrier_failed or report.unknown
                or report.facts_error or report.lost_claims):
            break
    return total


class _FactsUnavailable(RuntimeError):
    pass


# --- deciding ---------------------------------------------------------------------------------

def _decide_batch_retrying(engine: Engine, ids: list[int], *, report: DispatchReport, **kwargs) -> list[_ToSend]:
    """_decide_batch, run again from the start if another writer held the lock past the busy
    timeout (its transaction then stored nothing); each run counts into a report of its own, so
    only the run that committed is counted."""
    def decide() -> tuple[list[_ToSend], DispatchReport]:
        counted = DispatchReport()
        return _decide_batch(engine, ids, report=counted, **kwargs), counted

    to_send, counted = retry_on_busy(decide, what="dispatch: storing decisions")
    report.add(counted)
    return to_send


def _decide_batch(engine: Engine, ids: list[int], *, worker_id: str, now: datetime, pack: RulePack,
                  registry: NationalRegistry, config: DispatchConfig, report: DispatchReport) -> list[_ToSend]:
    with session_scope(engine) as session:
        rows = _load_rows(session, ids)
        try:
            facts = load_batch_facts(session, [row.contact.e164 for row in rows], now, registry)
        except Exception as error:
            raise _FactsUnavailable(f"{type(error).__name__}: {error}") from error
        decided = []
        for row in rows:
            if row.campaign.status != "running":
                report.lost_claims += _release(session, row.attempt.id, worker_id, now)
                continue
            outcome = _decide_one(row, facts, now=now, pack=pack, config=config)
            decided.append(outcome)
        return _store_batch(session, decided, worker_id=worker_id, now=now, pack=pack, report=report)


@dataclass(frozen=True)
class _Decided:
    row: _Row
    request: AttemptRequest
    facts: Facts                          # as the gate saw them (the batch's own calls included)
    decision: Decision
    plan: _Plan
    settings: CampaignSettings


def _decide_one(row: _Row, facts: dict[str, Facts], *, now: datetime, pack: RulePack,
                config: DispatchConfig) -> _Decided:
    phone = row.contact.e164
    request = attempt_request(row.campaign, row.contact, pack)
    seen = for_seller(facts[phone], campaign_seller(row.campaign))
    decision = evaluate(request, seen, pack, now)
    settings = campaign_settings(row.campaign)
    plan = _plan(decision, request, settings, pack, now, send_lease=timedelta(seconds=config.send_lease_seconds))
    if plan.counter == "allowed":
        # The same number may be in the batch twice (two campaigns): the second decision must
        # count the first call against the frequency caps.
        facts[phone] = replace(facts[phone], history=(*facts[phone].history,
                                                      PriorAttempt(now, Channel(row.campaign.channel))))
    return _Decided(row, request, seen, decision, plan, settings)


def _store_batch(session: Session, decided: list[_Decided], *, worker_id: str, now: datetime, pack: RulePack,
                 report: DispatchReport) -> list[_ToSend]:
    """Store the batch's decisions with their audit events and move its attempts on, in one go.

    The attempts still claimed by this worker are locked first: one a stopped campaign or the
    reaper took back meanwhile gets no decision stored and is not sent."""
    ours = _lock_still_ours(session, [item.row.attempt.id for item in decided], worker_id)
    kept = [item for item in decided if item.row.attempt.id in ours]
    report.lost_claims += len(decided) - len(kept)
    decision_ids = store_decisions(session, [
        NewDecision(scenario=scenario_to_dict(item.request, item.facts, now),
                    decision=decision_to_dict(item.decision), attempt_id=item.row.attempt.id)
        for item in kept], rules_version=pack.version, rule_pack_json=_pack_json(pack), actor=ACTOR, at=now)
    report.decision_ids.extend(decision_ids)
    _move_attempts(session, kept, decision_ids, now)
    to_send = []
    for item in kept:
        setattr(report, item.plan.counter, getattr(report, item.plan.counter) + 1)
        if item.plan.counter == "allowed":
            row = item.row
            to_send.append(_ToSend(attempt_id=row.attempt.id, campaign_id=row.campaign.id,
                                   channel=row.campaign.channel, to=row.contact.e164, from_=row.campaign.caller_id,
                                   body=row.campaign.script or "", cps=item.settings.cps,
                                   expires_at=item.plan.values["allow_expires_at"], decided_at=now,
                                   request=item.request, seller=campaign_seller(row.campaign),
                                   settings=item.settings))
    return to_send


def _lock_still_ours(session: Session, ids: list[int], worker_id: str) -> set[int]:
    if not ids:
        return set()
    statement = select(Attempt.id).where(Attempt.id.in_(ids), Attempt.status == "claimed",
                                         Attempt.claimed_by == worker_id).with_for_update()
    return set(session.connection().execute(statement).scalars())


def _move_attempts(session: Session, kept: list[_Decided], decision_ids: list[str], now: datetime) -> None:
    # Core executemany, one statement per shape of change: the ORM would re-evaluate the criteria
    # against every object of the batch in the session after each update (quadratic).
    by_shape: dict[tuple[str, ...], list[dict]] = {}
    for item, decision_id in zip(kept, decision_ids):
        values = {**item.plan.values, "decision_id": decision_id, "updated_at": now}
        by_shape.setdefault(tuple(sorted(values)), []).append({**values, "attempt_id": item.row.attempt.id})
    for shape, params in by_shape.items():
        statement = (update(Attempt).where(Attempt.id == bindparam("attempt_id"))
                     .values({name: bindparam(name) for name in shape}))
        session.connection().execute(statement, params)


def _load_rows(session: Session, ids: list[int]) -> list[_Row]:
    statement = (select(Attempt, Contact, Campaign).join(Contact, Contact.id == Attempt.contact_id)
                 .join(Campaign, Campaign.id == Attempt.campaign_id).where(Attempt.id.in_(ids))
                 .order_by(Attempt.due_at, Attempt.id))
    return [_Row(*found) for found in session.execute(statement).all()]


def attempt_request(campaign: Campaign, contact: Contact, pack: RulePack | None = None) -> AttemptRequest:
    """The gate's request: location from what the import resolved, but the contact's raw phone,
    ZIP and state for the record, so replay re-resolves them to the same location.

    A number in a prefix the pack's zone overrides name (the default pack's when None) has its
    zones formed again under them, as the gate does: a row imported before an override existed
    keeps phonenumbers' wrong zones, and the allow's expiry and the campaign hours are worked
    out from these zones, not the gate's."""
    channel = Channel(campaign.channel)
    voice = VoiceKind(campaign.voice) if channel is Channel.VOICE and campaign.voice else None
    location = location_under(
        Location(e164=contact.e164, timezones=tuple(contact.timezones.split()),
                 states=tuple(contact.states.split()), region=_region(contact.e164[:8])),
        contact.zip, contact.state, pack.zone_overrides if pack else default_zone_overrides())
    try:
        line_type = LineType(contact.line_type)
    except ValueError:
        line_type = LineType.UNKNOWN        # counts as mobile: the stricter consent need
    return AttemptRequest(channel=channel, purpose=Purpose(campaign.purpose), voice=voice,
                          automated=campaign.automated, line_type=line_type, location=location,
                          phone=contact.phone_raw, zip=contact.zip, state=contact.state)


@lru_cache(maxsize=65536)
def _region(prefix: str) -> str | None:
    return prefix_facts(prefix)[2]


@dataclass(frozen=True)
class _Plan:
    values: dict
    counter: str                          # the DispatchReport field it counts under


def _plan(decision: Decision, request: AttemptRequest, settings: CampaignSettings, pack: RulePack,
          now: datetime, *, send_lease: timedelta) -> _Plan:
    """What the attempt becomes: the gate's verdict, then the campaign's hours on top."""
    if decision.verdict is Verdict.BLOCK:
        codes = ", ".join(dict.fromkeys(reason.code for reason in decision.reasons))
        return _Plan(_ended("blocked", f"blocked: {codes}"), "blocked")
    campaign_open = openings.campaign_spans(settings.hours_minutes(), settings.start_date, settings.end_date,
                                            request.location.timezones)
    if decision.verdict is Verdict.DEFER:
        if decision.next_allowed_at is None:
            return _Plan(_ended("cancelled", "no allowed calling window within the search horizon"), "ended")
        due = openings.next_opening(campaign_open, decision.next_allowed_at)
        if due is None:
            return _Plan(_ended("cancelled", "campaign_ended: no campaign opening after the next legal window"), "ended")
        return _Plan(_waiting(due, None), "deferred")
    opening = openings.next_opening(campaign_open, now)
    if opening is None:
        return _Plan(_ended("cancelled", "campaign_ended: no campaign opening left"), "ended")
    if opening != now:
        return _Plan(_waiting(opening, f"campaign_hours: next opening {opening.isoformat()}"),
                     "waiting_for_campaign_hours")
    expires_at = _allow_expiry(request, campaign_open, pack, now)
    if expires_at is None:
        # Cannot happen when the gate allowed; if it does, the window math disagrees with the
        # gate, and an allow without an expiry must not be sent.
        return _Plan(_waiting(now + timedelta(minutes=1), "window_close_unknown"), "deferred")
    # Still `claimed` until the moment of sending (`_Sender.mark_sending`, whose instant is the
    # attempt's updated_at); dispatched_at is the decision's instant, as the pacing budget and
    # the caps count it, so another batch deciding the same number counts this attempt meanwhile.
    return _Plan({"status": "claimed", "allow_expires_at": expires_at, "dispatched_at": now,
                  "lease_until": now + send_lease,
                  "error": None}, "allowed")


def _allow_expiry(request: AttemptRequest, campaign_open, pack: RulePack, now: datetime) -> datetime | None:
    legal = openings.legal_window_close(pack, request.location.timezones, request.location.states, now)
    campaign = openings.opening_close(campaign_open, now)
    if legal is None or campaign is None:
        return None
    return min(legal, campaign)


def _ended(status: str, error: str) -> dict:
    return {"status": status, "error": error, "claimed_by": None, "lease_until": None}


def _waiting(due_at: datetime, error: str | None) -> dict:
    return {"status": "pending", "due_at": due_at, "error": error, "claimed_by": None, "lease_until": None}


def _release(session: Session, attempt_id: int, worker_id: str, now: datetime) -> int:
    return session.connection().execute(update(Attempt).where(
        Attempt.id == attempt_id, Attempt.status == "claimed", Attempt.claimed_by == worker_id)
        .values(status="pending", claimed_by=None, lease_until=None, updated_at=now)).rowcount


_pack_json_cache: dict[int, tuple[RulePack, str]] = {}


def _pack_json(pack: RulePack) -> str:
    # Serialising the pack costs more than a decision; the pack is immutable, so once per pack.
    cached = _pack_json_cache.get(id(pack))
    if cached is None or cached[0] is not pack:
        cached = _pack_json_cache[id(pack)] = (pack, pack.to_json())
    return cached[1]


# --- sending ----------------------------------------------------------------------------------

# How far before the batch's decision the last check looks: a revocation stored by another
# process whose clock runs a little behind ours must still be found. A hit only costs one more
# gate decision (which allows again when the opt-out was already known).
RECHECK_MARGIN = timedelta(minutes=5)

SEND, LOST, HELD_BACK = "send", "lost", "held_back"
# The sending step covers the requests due within this long (at most SLICE_MAX of them).
SLICE_SECONDS = 0.2
SLICE_MAX = 25
# Requests are spaced for this share of the campaign's cps: a request leaves a little after its
# slot (the sending mark's commit, a busy machine), and the headroom keeps even a second of late
# requests within the ceiling.
PACE_SHARE = 0.9


@dataclass
class _Sender:
    """What sending needs besides the items: where to record, and the gate for the last check."""

    engine: Engine
    adapter: Adapter
    worker_id: str
    pack: RulePack
    registry: NationalRegistry
    config: DispatchConfig
    report: DispatchReport
    upcoming: list[_ToSend] = field(default_factory=list)     # the batch's allowed attempts, in order
    marked: dict[int, str] = field(default_factory=dict)      # attempt id -> SEND | LOST | HELD_BACK
    marked_at: dict[int, datetime] = field(default_factory=dict)

    def mark_sending(self, item: _ToSend, at: datetime) -> str:
        """The committed step just before the carrier request: `claimed → sending`, with the last
        check for an opt-out since the batch was decided. SEND, LOST (no longer ours) or
        HELD_BACK (decided again on fresh facts, and not allowed now). An opt-out still waiting
        in the journal for the database counts too; an unreadable journal raises (the mark is
        rolled back, the claim is reaped and goes back to the gate: nothing is sent).

        One commit per request would cap a worker at the disk's flush rate, so the step covers
        the slice of requests due within SLICE_SECONDS (at the campaign's cps, at most
        SLICE_MAX): a crash leaves at most that many `sending` without a carrier id, which the
        reaper looks up at the carrier, and no request is sent more than SLICE_SECONDS after
        its check."""
        if item.attempt_id not in self.marked:
            self._mark_slice(self._slice_from(item, at), at)
        marked = self.marked.pop(item.attempt_id, LOST)
        if marked == SEND and at >= self.marked_at[item.attempt_id] + timedelta(seconds=self.config.send_lease_seconds):
            # Its sending lease ran out (a stalled worker): the reaper may already be settling it,
            # so it is left `sending` for the reaper, never sent now.
            log.warning("dispatch: attempt %s not sent: its sending lease ran out before its turn", item.attempt_id)
            return LOST
        return marked

    def _slice_from(self, item: _ToSend, at: datetime) -> list[_ToSend]:
        size = max(1, min(SLICE_MAX, math.floor(item.cps * SLICE_SECONDS)))
        start = next((n for n, upcoming in enumerate(self.upcoming) if upcoming.attempt_id == item.attempt_id), None)
        if start is None:
            return [item]
        window_end = at + timedelta(seconds=SLICE_SECONDS)
        # The item itself, then the next ones of its campaign whose allow outlives the slice.
        return [item] + [later for later in self.upcoming[start + 1:]
                         if later.campaign_id == item.campaign_id and later.expires_at > window_end
                         and later.attempt_id not in self.marked][:size - 1]

    def _mark_slice(self, items: list[_ToSend], at: datetime) -> None:
        lease = at + timedelta(seconds=self.config.send_lease_seconds)
        ids = [item.attempt_id for item in items]
        with session_scope(self.engine) as session:
            # The UPDATE first: on SQLite it takes the write lock before anything is read.
            session.execute(update(Attempt).where(
                Attempt.id.in_(ids), Attempt.status == "claimed", Attempt.claimed_by == self.worker_id)
                .values(status="sending", lease_until=lease, updated_at=at))
            ours = set(session.execute(select(Attempt.id).where(
                Attempt.id.in_(ids), Attempt.status == "sending", Attempt.claimed_by == self.worker_id)).scalars())
            since = min(item.decided_at for item in items) - RECHECK_MARGIN
            opted_out = opted_out_among(session, [item.to for item in items if item.attempt_id in ours], since)
            opted_out |= set(journaled_revocations([item.to for item in items if item.attempt_id in ours]))
            for item in items:
                self.marked_at[item.attempt_id] = at
                if item.attempt_id not in ours:
                    self.marked[item.attempt_id] = LOST
                elif item.to in opted_out:
                    self.marked[item.attempt_id] = self._decide_again(session, item, at, lease)
                else:
                    self.marked[item.attempt_id] = SEND

    def _decide_again(self, session: Session, item: _ToSend, at: datetime, lease: datetime) -> str:
        """An opt-out may have come after the decision: the gate decides again on fresh facts,
        and that decision is stored like any other (a block carries its real reason)."""
        # Not counted against its own caps: it has not been sent.
        session.execute(update(Attempt).where(Attempt.id == item.attempt_id).values(dispatched_at=None))
        facts = load_batch_facts(session, [item.to], at, self.registry)
        seen = for_seller(facts[item.to], item.seller)
        decision = evaluate(item.request, seen, self.pack, at)
        plan = _plan(decision, item.request, item.settings, self.pack, at,
                     send_lease=timedelta(seconds=self.config.send_lease_seconds))
        [decision_id] = store_decisions(session, [NewDecision(
            scenario=scenario_to_dict(item.request, seen, at), decision=decision_to_dict(decision),
            attempt_id=item.attempt_id)], rules_version=self.pack.version, rule_pack_json=_pack_json(self.pack),
            actor=ACTOR, at=at)
        self.report.decision_ids.append(decision_id)
        values = dict(plan.values)
        if plan.counter == "allowed":
            values.update(status="sending", dispatched_at=at, lease_until=lease)
        else:
            self.report.blocked_before_send += 1
            values.update(allow_expires_at=None, dispatched_at=None)
        session.execute(update(Attempt).where(Attempt.id == item.attempt_id)
                        .values(**values, decision_id=decision_id, updated_at=at))
        log.info("dispatch: attempt %s decided again before sending (%s): %s", item.attempt_id,
                 decision.verdict.value, ", ".join(reason.code for reason in decision.reasons) or "-")
        return SEND if plan.counter == "allowed" else HELD_BACK


def opted_out_since(session: Session, phone: str, since: datetime) -> bool:
    """Whether a revocation or an internal do-not-call entry for `phone` was recorded at or after
    `since`."""
    return phone in opted_out_among(session, [phone], since)


def opted_out_among(session: Session, phones: list[str], since: datetime) -> set[str]:
    """Which of `phones` got a revocation or an internal do-not-call entry recorded at or after
    `since`: one query on the indexes (revocations.phone, dnc_entries(list_kind, phone))."""
    if not phones:
        return set()
    revoked = select(Revocation.phone).where(Revocation.phone.in_(phones), Revocation.recorded_at >= since)
    listed = select(DncEntry.phone).where(DncEntry.list_kind == "internal", DncEntry.phone.in_(phones),
                                          DncEntry.added_at >= since)
    return set(session.execute(union(revoked, listed)).scalars())


def _send_all(sender: _Sender, to_send: list[_ToSend], *, now: datetime, sleep: Callable[[float], None],
              monotonic: Callable[[], float], started: float) -> None:
    """Send each allowed attempt in its turn; `started` is the monotonic instant of `now`."""
    answered = _CarrierIds(sender.engine, sender.config, monotonic)
    slots = _SendSlots(sender.engine)
    try:
        for item in to_send:
            # Twilio queues calls above the account's CPS limit, and a queued call could ring after
            # the window closes: space each campaign's requests at 1/cps rather than bursting,
            # across every worker (the campaign's slots are shared, in the database).
            _wait_for_send_slot(slots, item, now=now, started=started, sleep=sleep, monotonic=monotonic,
                                answered=answered)
            sending_at = now + timedelta(seconds=monotonic() - started)
            if sending_at >= item.expires_at:
                sender.report.expired_before_send += retry_on_busy(
                    lambda: _back_to_gate(sender.engine, item.attempt_id, sending_at, sender.worker_id),
                    what="dispatch: allow expired")
                continue
            marked = retry_on_busy(lambda: sender.mark_sending(item, sending_at), what="dispatch: marking sending")
            if marked == LOST:
                sender.report.lost_claims += 1
                continue
            if marked == HELD_BACK:
                continue
            call = _send_one(sender, item, sending_at=sending_at)
            if call is not None:
                answered.add(item.attempt_id, call, sending_at)
    finally:
        # Even when interrupted: every carrier id already received is worth recording.
        answered.flush()


# A worker that wakes up later than this share of the spacing past its slot gives the slot up and
# reserves another: sent late, its request would share a second with the slots after it, which
# other workers send on time. After SLOT_TRIES late wake-ups (a starved machine) it sends anyway.
LATE_SHARE_OF_SPACING = 0.5
SLOT_TRIES = 3


class _SendSlots:
    """The send slots this worker reserved (`scheduler.pacing.reserve_send_slots`), per campaign,
    a slice's worth at a time (as many as SLICE_SECONDS holds at the campaign's pace, at most
    SLICE_MAX): one commit per slice, not per request. Slots left over are simply not used."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reserved: dict[int, list[datetime]] = {}

    def next(self, item: _ToSend, at: datetime) -> datetime:
        """The campaign's next reserved slot still ahead of `at` less the lateness allowed (a
        slot already missed is dropped), reserving more when none is left."""
        pace = item.cps * PACE_SHARE
        reserved = [slot for slot in self.reserved.get(item.campaign_id, ())
                    if (at - slot).total_seconds() <= LATE_SHARE_OF_SPACING / pace]
        if not reserved:
            count = max(1, min(SLICE_MAX, math.floor(pace * SLICE_SECONDS)))
            reserved = retry_on_busy(lambda: reserve_send_slots(self.engine, item.campaign_id, pace, at, count),
                                     what="dispatch: reserving send slots")
        self.reserved[item.campaign_id] = reserved[1:]
        return reserved[0]


def _wait_for_send_slot(slots: _SendSlots, item: _ToSend, *, now: datetime, started: float,
                        sleep: Callable[[float], None], monotonic: Callable[[], float],
                        answered: _CarrierIds) -> datetime:
    """Take the campaign's next send slot (shared by every worker) and sleep until it; returns
    the slot."""
    for _ in range(SLOT_TRIES):
        asking_at = now + timedelta(seconds=monotonic() - started)
        slot = slots.next(item, asking_at)
        wait = (slot - asking_at).total_seconds()
        if wait > 0:
            if wait >= answered.RECORD_WITHIN:
                answered.flush()          # don't hold answers through a long wait
            sleep(wait)
        if not _late(item, slot, now=now, started=started, monotonic=monotonic):
            break
    return slot


def _late(item: _ToSend, slot: datetime, *, now: datetime, started: float, monotonic: Callable[[], float]) -> bool:
    late = (now + timedelta(seconds=monotonic() - started) - slot).total_seconds()
    return late > LATE_SHARE_OF_SPACING / (item.cps * PACE_SHARE)


def _send_one(sender: _Sender, item: _ToSend, *, sending_at: datetime) -> CarrierCall | None:
    report = sender.report
    try:
        call = _carrier_request(sender.adapter, item, sender.config.callbacks)
    except CarrierError as error:
        if error.outcome_unknown:
            # A 5xx or a lost answer to a create: the carrier may have acted. The attempt stays
            # `sending`; the reaper looks it up at the carrier, never re-sends it blindly.
            log.warning("dispatch: attempt %s: carrier outcome unknown: %s", item.attempt_id, error)
            report.unknown += 1
            return None
        # The adapter already retried what was retryable: the carrier refused this request.
        report.carrier_failed += _record_carrier_failure(sender.engine, item.attempt_id, str(error), sending_at)
        return None
    except Exception:
        # Not the carrier's answer (a network error mid-request, a bug): the call may or may not
        # exist. The attempt stays `sending`; the reaper reconciles it from the carrier.
        log.exception("dispatch: carrier request for attempt %s ended without an answer", item.attempt_id)
        report.unknown += 1
        return None
    report.dialed += 1
    return call


def _carrier_request(adapter: Adapter, item: _ToSend, callbacks: CallbackUrls) -> CarrierCall:
    if item.channel == Channel.SMS.value:
        return adapter.send_sms(SmsRequest(to=item.to, from_=item.from_, body=item.body,
                                           status_callback=callbacks.sms_status(item.attempt_id),
                                           attempt_id=item.attempt_id))
    return adapter.place_call(CallRequest(to=item.to, from_=item.from_,
                                          twiml_url=callbacks.twiml(item.attempt_id),
                                          status_callback=callbacks.status(item.attempt_id),
                                          amd_callback=callbacks.amd(item.attempt_id),
                                          attempt_id=item.attempt_id))


class _CarrierIds:
    """Carrier ids waiting to be recorded, written together: one commit per call would cap a
    worker at the disk's fsync rate. Held at most RECORD_EVERY answers or RECORD_WITHIN seconds;
    a crash loses only those, whose attempts stay `sending` and are looked up at the carrier."""

    RECORD_EVERY = 50
    RECORD_WITHIN = 0.5

    def __init__(self, engine: Engine, config: DispatchConfig, monotonic: Callable[[], float]):
        self.engine, self.config, self.monotonic = engine, config, monotonic
        self.pending: list[tuple[int, CarrierCall, datetime]] = []
        self.first_at = 0.0

    def add(self, attempt_id: int, call: CarrierCall, at: datetime) -> None:
        if not self.pending:
            self.first_at = self.monotonic()
        self.pending.append((attempt_id, call, at))
        if len(self.pending) >= self.RECORD_EVERY or self.monotonic() - self.first_at >= self.RECORD_WITHIN:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            record_carrier_ids(self.engine, self.pending, self.config)
            self.pending = []


def record_carrier_ids(engine: Engine, answers: list[tuple[int, CarrierCall, datetime]],
                       config: DispatchConfig) -> None:
    # Also when the reaper already gave up on an attempt (failed/unknown): the call exists after
    # all, and its webhooks need the carrier id to find the attempt. A webhook that recorded the
    # id first (carrier_id set) is left alone.
    statement = (update(Attempt).where(
        Attempt.id == bindparam("attempt_id"), Attempt.carrier_id.is_(None),
        (Attempt.status == "sending") | (Attempt.status == "dialing")
        | ((Attempt.status == "failed") & (Attempt.outcome == "unknown")))
        .values(carrier_id=bindparam("sid"), carrier_status=bindparam("carrier_said"), status="dialing",
                outcome=None, error=None, lease_until=bindparam("call_lease_until"), updated_at=bindparam("at")))
    lease = timedelta(seconds=config.call_lease_seconds)
    params = [{"attempt_id": attempt_id, "sid": call.sid, "carrier_said": call.status,
               "call_lease_until": at + lease, "at": at} for attempt_id, call, at in answers]

    def record() -> None:
        with engine.begin() as connection:
            connection.execute(statement, params)

    # A lock error here once ended the tick with the rest of its batch unsent.
    retry_on_busy(record, what="dispatch: recording carrier ids")


def _record_carrier_id(engine: Engine, attempt_id: int, call: CarrierCall, at: datetime,
                       config: DispatchConfig) -> None:
    record_carrier_ids(engine, [(attempt_id, call, at)], config)


def _record_carrier_failure(engine: Engine, attempt_id: int, message: str, at: datetime) -> int:
    def record() -> int:
        with session_scope(engine) as session:
            return session.execute(update(Attempt).where(
                Attempt.id == attempt_id, Attempt.status == "sending", Attempt.carrier_id.is_(None))
                .values(status="failed", outcome="carrier_error", error=f"carrier: {message}"[:2000],
                        lease_until=None, claimed_by=None, updated_at=at)).rowcount
    return retry_on_busy(record, what="dispatch: recording a carrier refusal")


def _back_to_gate(engine: Engine, attempt_id: int, at: datetime, worker_id: str) -> int:
    """The allow expired before its turn to be sent: the attempt is decided again."""
    with session_scope(engine) as session:
        return session.execute(update(Attempt).where(
            Attempt.id == attempt_id, Attempt.status == "claimed", Attempt.claimed_by == worker_id)
            .values(status="pending", due_at=at, dispatched_at=None, allow_expires_at=None, lease_until=None,
                    claimed_by=None, error="allow expired before sending", updated_at=at)).rowcount
