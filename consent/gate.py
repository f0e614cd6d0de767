"""The compliance gate: a pure function of (request, facts, rule pack, instant).

It reads no clock, no database and no network. Each `check_*` returns the reasons that hold;
`evaluate` combines them into a verdict as DESIGN.md's contract says: block if any blocking
reason holds, else defer (with the earliest instant no deferring reason holds), else allow.

What depends only on the pack and the contact's candidate zones and states (a `Place`) is
derived once and kept per pack: the allowed spans per block of UTC days, the state flags, defer
reasons per UTC minute, allow decisions. Each memo is a pure function of its key, so keeping,
dropping or sharing entries never changes an answer; all are bounded.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from consent import windows
from consent.location import location_under, override_prefixes
from consent.rules import Cap, RulePack, keep_bounded
from consent.scenario import iso_utc
from consent.types import (
    AttemptRequest, Channel, ConsentGrant, ConsentKind, ConsentNeed, Decision, Facts, LineType, Location,
    Purpose, Reason, Verdict, VoiceKind,
)

BLOCKING = frozenset({"invalid_number", "location_unknown", "dnc_internal", "dnc_litigator",
                      "dnc_data_stale", "dnc_national", "dnc_state", "consent_revoked",
                      "consent_missing"})
DEFERRING = frozenset({"calling_window", "holiday", "frequency_cap"})
MAX_CAP_ROUNDS = 16      # window openings re-checked against caps before giving up
PLACE_LIMIT = 20_000     # places kept per pack (a list touches a few hundred zone/state sets)
PLACE_ENTRIES_LIMIT = 4_096   # reasons kept per place before its memo starts afresh
PLACE_BLOCKS_LIMIT = 16       # blocks of allowed spans kept per place (about a year and a half)
# From 1973 every zone a contact is placed in has whole-minute UTC offsets (before it, local
# mean times and odd offsets such as Monrovia's -0:44:30 put edges inside a minute).
WHOLE_MINUTES_FROM = 94_694_400.0     # 1973-01-01T00:00:00Z
_MOBILE_LIKE = frozenset({LineType.MOBILE, LineType.UNKNOWN})
_RECORDED = frozenset({VoiceKind.PRERECORDED, VoiceKind.ARTIFICIAL})
# Most decisions find nothing in most checks: share one empty answer instead of building one.
_NO_REASONS: tuple[Reason, ...] = ()
_NOTHING_CAPPED: tuple[tuple[Reason, ...], None] = (_NO_REASONS, None)
_OVERRIDE_PREFIXES = "gate.zone_override_prefixes"     # the pack cache's key for them


def evaluate(request: AttemptRequest, facts: Facts, rules: RulePack, at: datetime) -> Decision:
    if at.tzinfo is None:
        raise ValueError("the gate needs an aware instant for `at`")
    e164 = request.location.e164
    prefixes = rules.cache.get(_OVERRIDE_PREFIXES) or _override_prefixes(rules)
    if e164 is not None and (e164[2:5] in prefixes or e164[2:8] in prefixes):
        request = located(request, rules)     # most numbers are in no overridden prefix
    location = request.location
    if not location.valid:
        reason = Reason("invalid_number", "nanp.valid_number",
                        f"{request.phone!r} is not a valid NANP (+1) number")
        return _decision(Verdict.BLOCK, [reason], None, request, rules, ConsentNeed.NONE)
    ts = at.timestamp()
    place = place_of(rules, location)
    flags, open_now = place_facts(rules, place, ts)
    need = consent_needed(request, flags)
    standing = consent_standing(request, facts, at)
    reasons = [*check_location(request), *check_dnc(request, facts, rules, at, standing),
               *check_consent(request, need, standing, at)]
    cap_free_at = None
    if location.timezones:
        if not open_now:
            reasons.extend(_cached_window_reasons(rules, place, at, ts))
        if flags.caps and facts.history:        # most decisions have nothing to count
            cap_reasons, cap_free_at = check_caps(facts, flags, at)
            reasons.extend(cap_reasons)
    return decide(reasons, request, facts, rules, place, at, need, cap_free_at)


def located(request: AttemptRequest, rules: RulePack) -> AttemptRequest:
    """The request with its candidate zones formed under this pack's zone overrides (689 in
    Eastern time only, 928 with the Navajo Nation's daylight time, ...): the decision, its
    `timezones` and its replay under the same pack all see the corrected zones."""
    location = location_under(request.location, request.zip, request.state, rules.zone_overrides)
    return request if location is request.location else replace(request, location=location)


def _override_prefixes(rules: RulePack) -> frozenset[str]:
    # Kept in the pack's cache: evaluate reads them on every decision.
    return rules.remember(_OVERRIDE_PREFIXES, override_prefixes(rules.zone_overrides))


def decide(reasons: list[Reason], request: AttemptRequest, facts: Facts, rules: RulePack, place: Place,
           at: datetime, need: ConsentNeed, cap_free_at: datetime | None) -> Decision:
    if not reasons:
        return _allow(request, rules, place, need)
    codes = {reason.code for reason in reasons}
    if codes & BLOCKING:
        return _decision(Verdict.BLOCK, reasons, None, request, rules, need)
    start = max(at, cap_free_at) if cap_free_at else at
    return _decision(Verdict.DEFER, reasons, _next_allowed(facts, rules, place, start), request, rules, need)


def _allow(request: AttemptRequest, rules: RulePack, place: Place, need: ConsentNeed) -> Decision:
    # An allow says nothing but the contact's zones and states, the pack and the consent need,
    # and a Decision is immutable: one shared value per place and need instead of one per call.
    found = place.allows.get(need)
    if found is None:
        found = place.allows[need] = _decision(Verdict.ALLOW, [], None, request, rules, need)
    return found


def _next_allowed(facts: Facts, rules: RulePack, place: Place, start: datetime) -> datetime | None:
    """The earliest instant at or after `start` inside every window with no cap reached.

    Caps can change with the date (a state's entry taking effect), so each window opening is
    checked against the caps in force then; a reached cap moves the search to when it frees.
    """
    if not facts.history or not place.ever_capped:
        # Nothing to count, or no cap in any of these states' entries: the next opening it is.
        return _next_opening_instant(rules, place, start)
    candidate = start
    for _ in range(MAX_CAP_ROUNDS):
        found = _next_opening(rules, place, candidate.timestamp())
        if found is None:
            return None
        if found != candidate.timestamp():
            candidate = datetime.fromtimestamp(found, timezone.utc)
        _, cap_free_at = check_caps(facts, place_facts(rules, place, found)[0], candidate)
        if cap_free_at is None:
            return candidate.astimezone(timezone.utc)
        candidate = cap_free_at
    return None


def _next_opening_instant(rules: RulePack, place: Place, start: datetime) -> datetime | None:
    ts = start.timestamp()
    opening = _next_opening(rules, place, ts)
    if opening is None:
        return None
    if opening == ts:
        return start.astimezone(timezone.utc)
    return datetime.fromtimestamp(opening, timezone.utc)


def _next_opening(rules: RulePack, place: Place, ts: float) -> float | None:
    return windows.first_allowed(lambda block: place.spans_of_block(rules, block), ts)


def _decision(verdict: Verdict, reasons: list[Reason], next_allowed_at: datetime | None,
              request: AttemptRequest, rules: RulePack, need: ConsentNeed) -> Decision:
    return Decision(verdict=verdict, reasons=tuple(reasons), next_allowed_at=next_allowed_at,
                    timezones=request.location.timezones, states=request.location.states,
                    rules_version=rules.version, consent_needed=need)


# --- places: what contacts with the same candidate zones and states share --------------------

@dataclass(frozen=True, slots=True)
class StateFlags:
    """What the candidate states add on a given day: caps, and the mini-TCPA consent rule."""

    caps: tuple[tuple[str, Cap], ...]
    automated_needs_written: bool


class Place:
    """Per-pack memos for one (candidate zones, candidate states).

    Every field is derived from the pack and those two tuples; the dictionaries fill as
    decisions need them and are bounded (PLACE_BLOCKS_LIMIT, PLACE_ENTRIES_LIMIT).
    """

    __slots__ = ("zones", "states", "tzinfos", "settled_at", "settled_flags", "ever_capped",
                 "blocks", "reasons", "allows")

    def __init__(self, rules: RulePack, zones: tuple[str, ...], states: tuple[str, ...]):
        self.zones, self.states = zones, states
        self.tzinfos: tuple[ZoneInfo, ...] = tuple(windows.zone_info(zone) for zone in zones)
        # From the first local date on which every candidate state's latest entry is in force,
        # the flags no longer depend on the date. Local dates trail UTC by under a day, so from
        # the UTC midnight after it every zone is there (before it: derived per date set).
        settled_from = rules.settled_from(states)
        self.settled_at: float = (float("-inf") if settled_from == date.min
                                  else (settled_from.toordinal() - windows.EPOCH_ORDINAL + 1) * windows.DAY)
        self.settled_flags = _flags_on(rules, states, (settled_from,))
        self.ever_capped: bool = rules.ever_capped(states)
        self.blocks: dict[int, windows.BlockSpans] = {}           # allowed spans per block of days
        self.reasons: dict[int, tuple[Reason, ...]] = {}          # per UTC minute, and its first instant
        self.allows: dict[ConsentNeed, Decision] = {}

    def spans_of_block(self, rules: RulePack, block: int) -> windows.BlockSpans:
        found = self.blocks.get(block)
        if found is None:
            found = keep_bounded(self.blocks, PLACE_BLOCKS_LIMIT, block,
                                 windows.cached_block_spans(rules, self.zones, self.states, block))
        return found


def place_of(rules: RulePack, location: Location) -> Place:
    key = (location.timezones, location.states)
    places = rules.places
    place = places.get(key)
    if place is None:
        place = keep_bounded(places, PLACE_LIMIT, key, Place(rules, *key))
    return place


def place_facts(rules: RulePack, place: Place, ts: float) -> tuple[StateFlags, bool]:
    """(state flags, inside every window) at `ts`."""
    block = windows.block_of(ts)
    spans = place.blocks.get(block) or place.spans_of_block(rules, block)
    open_now = spans.holds(ts)
    return (place.settled_flags if ts >= place.settled_at else state_flags(rules, place, ts)), open_now


def state_flags(rules: RulePack, place: Place, ts: float) -> StateFlags:
    """Flags of every state entry in force on any candidate zone's local date (entries take
    effect on local dates, as windows do); the UTC date when no zone is known."""
    days = tuple(sorted({datetime.fromtimestamp(ts, tz).date() for tz in place.tzinfos})) or (_utc_date(ts),)
    return _flags_on(rules, place.states, days)


def _utc_date(ts: float) -> date:
    return date.fromordinal(windows.EPOCH_ORDINAL + int(ts // 86400))


def _flags_on(rules: RulePack, states: tuple[str, ...], days: tuple[date, ...]) -> StateFlags:
    key = ("state_flags", states, days)
    flags = rules.cache.get(key)
    if flags is None:
        found = [rule for code in states for day in days
                 if (rule := rules.state_rule(code, day)) is not None]
        caps = {rule.code: rule.cap for rule in found if rule.cap}
        flags = rules.remember(key, StateFlags(
            caps=tuple(sorted(caps.items())),
            automated_needs_written=any(rule.automated_needs_written_consent for rule in found)))
    return flags




# --- location -------------------------------------------------------------------------------

def check_location(request: AttemptRequest) -> list[Reason]:
    if request.location.timezones:
        return _NO_REASONS
    return [Reason("location_unknown", "location.candidate_zones",
                   f"{request.location.e164} is not geographic (toll-free or personal) and no ZIP "
                   f"or state places it in a time zone")]


# --- DNC --------------------------------------------------------------------------------------

def check_dnc(request: AttemptRequest, facts: Facts, rules: RulePack, at: datetime,
              standing: ConsentStanding) -> list[Reason]:
    if not (facts.internal_dnc or facts.litigator or request.purpose is Purpose.TELEMARKETING):
        return _NO_REASONS
    reasons = []
    if facts.internal_dnc:
        reasons.append(Reason("dnc_internal", "dnc.internal",
                              "on the company's do-not-contact list: blocks every purpose"))
    if facts.litigator:
        reasons.append(Reason("dnc_litigator", "dnc.litigator", "on the litigator list"))
    if request.purpose is Purpose.TELEMARKETING:
        reasons.extend(_check_telemarketing_dnc(facts, rules, at, standing.written))
    return reasons


def _check_telemarketing_dnc(facts: Facts, rules: RulePack, at: datetime, written: bool) -> list[Reason]:
    reasons = []
    stale = _stale_registry(facts, rules, at)
    if stale:
        reasons.append(Reason("dnc_data_stale", "federal.dnc.scrub_age", stale))
    national = facts.national_dnc
    if national is not None and national.listed and not written and not _has_ebr(facts, rules, at):
        reasons.append(Reason("dnc_national", "federal.dnc.national",
                              "on the National Do Not Call Registry, with no written consent covering "
                              "this attempt and no business relationship (transaction within "
                              f"{rules.federal.ebr_transaction_months} months, inquiry within "
                              f"{rules.federal.ebr_inquiry_months} months)"))
    if not written:
        for state in facts.state_dnc:
            reasons.append(Reason("dnc_state", f"state.{state}.dnc",
                                  f"on the {state} state do-not-call list, with no written consent covering this attempt"))
    return reasons


def _stale_registry(facts: Facts, rules: RulePack, at: datetime) -> str | None:
    limit = rules.federal.dnc_scrub_max_age_days
    national = facts.national_dnc
    if national is None or national.synced_at is None:
        return "no National DNC Registry data on file: telemarketing needs a scrub at most " \
               f"{limit} days old"
    age = at - national.synced_at
    if age > rules.dnc_scrub_max_age:
        return (f"National DNC Registry data synced {iso_utc(national.synced_at)} is {age.days} days "
                f"old at {iso_utc(at)} (max {limit})")
    return None


def _has_ebr(facts: Facts, rules: RulePack, at: datetime) -> bool:
    federal = rules.federal
    return (_within_months(facts.last_transaction_at, federal.ebr_transaction_months, at)
            or _within_months(facts.last_inquiry_at, federal.ebr_inquiry_months, at))


def _within_months(when: datetime | None, months: int, at: datetime) -> bool:
    return when is not None and when <= at <= add_months(when, months)


def add_months(when: datetime, months: int) -> datetime:
    """Calendar months later, clamped to the month's last day (Aug 31 + 6 months = Feb 28/29)."""
    month_index = when.month - 1 + months
    year, month = when.year + month_index // 12, month_index % 12 + 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day)


# --- consent ----------------------------------------------------------------------------------

def consent_needed(request: AttemptRequest, flags: StateFlags) -> ConsentNeed:
    """Which consent the attempt needs, per the contract's table."""
    recorded = request.channel is Channel.VOICE and request.voice in _RECORDED
    automated_to_mobile = request.automated and request.line_type in _MOBILE_LIKE
    if request.purpose is Purpose.TELEMARKETING:
        if (request.channel is Channel.SMS or recorded or automated_to_mobile
                or (request.automated and flags.automated_needs_written)):
            return ConsentNeed.WRITTEN
        return ConsentNeed.NONE
    if request.channel is Channel.SMS or recorded or automated_to_mobile:
        return ConsentNeed.EXPRESS
    return ConsentNeed.NONE


@dataclass(frozen=True, slots=True)
class ConsentStanding:
    """Which kinds of consent cover this channel and purpose at `at`, after revocations.

    `opted_out_at` is the latest revocation of the channel at or before `at`; `revoked_at` is the
    same instant while it still holds (no consent covering the channel and purpose was granted
    after it), else None.
    """

    written: bool
    express: bool
    revoked_at: datetime | None
    opted_out_at: datetime | None = None


# Without a revocation a standing is one of four values: share them.
_STANDINGS = {(written, express): ConsentStanding(written, express, None)
              for written in (False, True) for express in (False, True)}


def consent_standing(request: AttemptRequest, facts: Facts, at: datetime) -> ConsentStanding:
    if not facts.consents and not facts.revocations:
        return _STANDINGS[False, False]
    opted_out_at = latest_revocation(facts, request.channel, at)
    written = express = renewed = False
    for grant in facts.consents:
        # A revocation ends every consent granted at or before it; a newer grant starts afresh.
        if opted_out_at is not None and not grant.granted_at > opted_out_at:
            continue
        # Any grant since the opt-out that names this channel and purpose lifts the opt-out
        # itself, even one of the wrong kind or since expired: whether it is enough for this
        # attempt is `consent_missing`'s question.
        renewed = renewed or (grant.granted_at <= at and _covers_scope(grant, request))
        if _covers(grant, request, at):
            if grant.kind is ConsentKind.WRITTEN:
                written = True
            express = True
    if opted_out_at is None:
        return _STANDINGS[written, express]
    return ConsentStanding(written, express, None if renewed else opted_out_at, opted_out_at)


def check_consent(request: AttemptRequest, need: ConsentNeed, standing: ConsentStanding, at: datetime) -> list[Reason]:
    """`consent_revoked` for every attempt on an opted-out channel (an opt-out is also a
    do-not-call request, 47 CFR 64.1200(d)), whatever consent it needs; `consent_missing` when
    the consent it needs is not in force."""
    missing = need is not ConsentNeed.NONE and not (
        standing.written if need is ConsentNeed.WRITTEN else standing.express)
    if not missing and standing.revoked_at is None:
        return _NO_REASONS
    reasons = []
    channel, purpose = request.channel.value, request.purpose.value
    if standing.revoked_at is not None:
        reasons.append(Reason("consent_revoked", "consent.revocation",
                              f"{channel} opt-out at {iso_utc(standing.revoked_at)} is a do-not-call request "
                              f"for every {channel} attempt; no consent covering {channel} {purpose} "
                              f"was granted since"))
    if missing:
        rule, wanted, why = _consent_wording(need, request.channel, request.purpose, request.voice,
                                             request.automated, request.line_type)
        since = ("" if standing.opted_out_at is None
                 else f"after the {channel} opt-out at {iso_utc(standing.opted_out_at)} and ")
        reasons.append(Reason("consent_missing", rule, f"{why} needs {wanted}; none on file is granted "
                                                       f"{since}by {iso_utc(at)}, unexpired and of that kind"))
    return reasons


@lru_cache(maxsize=256)     # a few dozen combinations of enums and a flag exist
def _consent_wording(need: ConsentNeed, channel: Channel, purpose: Purpose, voice: VoiceKind | None,
                     automated: bool, line_type: LineType) -> tuple[str, str, str]:
    """(rule, consent wanted, why it is needed): the parts of the text that depend on the
    attempt's kind only, so a block for missing consent does not format them every time."""
    wanted = f"{need.value} consent covering {channel.value} {purpose.value}"
    return f"consent.{need.value}", wanted, _why_needed(channel, purpose, voice, automated, line_type)


def _covers(grant: ConsentGrant, request: AttemptRequest, at: datetime) -> bool:
    return (grant.granted_at <= at and (grant.expires_at is None or at < grant.expires_at)
            and _covers_scope(grant, request))


def _covers_scope(grant: ConsentGrant, request: AttemptRequest) -> bool:
    """The grant names this attempt's channel and purpose (whatever its dates and kind)."""
    return request.channel in grant.channels and request.purpose in grant.purposes


def latest_revocation(facts: Facts, channel: Channel, at: datetime) -> datetime | None:
    latest = None
    for revocation in facts.revocations:
        if channel in revocation.channels and revocation.at <= at and (latest is None or revocation.at > latest):
            latest = revocation.at
    return latest


def _why_needed(channel: Channel, purpose_kind: Purpose, voice: VoiceKind | None, automated: bool,
                line_type: LineType) -> str:
    purpose = purpose_kind.value
    if channel is Channel.SMS:
        return f"{_article(purpose)} {purpose} text"
    if voice in _RECORDED:
        return f"{_article(purpose)} {purpose} call with {_article(voice.value)} {voice.value} voice"
    if automated and line_type in _MOBILE_LIKE:
        return f"an automated {purpose} call to {_article(line_type.value)} {line_type.value} line"
    return f"an automated {purpose} call to a contact in a mini-TCPA state"


# --- windows, holidays and caps ---------------------------------------------------------------

def _cached_window_reasons(rules: RulePack, place: Place, at: datetime, ts: float) -> tuple[Reason, ...]:
    """window_reasons, kept per place under a key that fixes every word of the text.

    The text names the local HH:MM, and edges fall on whole UTC minutes (the zones we place
    contacts in have had whole-minute offsets since WHOLE_MINUTES_FROM), so inside the open
    minute after an edge the words are the same; exactly on the minute they may not be (20:00:00
    is "at the 20:00 close", 20:00:30 "after 20:00"). The key tells the two apart, so the text
    never depends on which instant of the minute was decided first.
    """
    if ts < WHOLE_MINUTES_FROM:
        return tuple(window_reasons(rules, place, at))
    minute = int(ts // 60)
    key = minute * 2 + (ts != minute * 60)
    found = place.reasons.get(key)
    if found is None:
        found = keep_bounded(place.reasons, PLACE_ENTRIES_LIMIT, key, tuple(window_reasons(rules, place, at)))
    return found


def window_reasons(rules: RulePack, place: Place, at: datetime) -> list[Reason]:
    """Why `at` is outside the windows: one reason per rule that excludes it, in any zone (the
    first zone in which it does words it)."""
    ts = at.timestamp()
    spans = place.spans_of_block(rules, windows.block_of(ts))
    reasons: dict[str, Reason] = {}
    for zone_index, tz in enumerate(place.tzinfos):
        local = at.astimezone(tz)
        for constraint in spans.excluding(zone_index, local, ts):
            if constraint.rule not in reasons:
                code = "holiday" if constraint.kind == "holiday" else "calling_window"
                reasons[constraint.rule] = Reason(code, constraint.rule, windows.describe(rules, constraint, local, ts))
    return list(reasons.values())


def check_caps(facts: Facts, flags: StateFlags, at: datetime) -> tuple[list[Reason], datetime | None]:
    """Reasons for every capped state whose cap is reached, and when the caps free up again.

    A cap is a count in a rolling window (the pack's data: 3 in 24 hours in FL, 1 in 8 in ME);
    voice and SMS count together."""
    if not flags.caps or not facts.history:
        return _NOTHING_CAPPED
    reasons, free_at = [], None
    for code, cap in flags.caps:
        window = cap.window
        since = at - window
        recent = sorted(attempt.at for attempt in facts.history if since < attempt.at <= at)
        if len(recent) >= cap.count:
            # Free one window after the oldest attempt counted (of the latest `count`): from
            # then on fewer than `count` fall inside the window.
            state_free_at = recent[len(recent) - cap.count] + window
            free_at = max(free_at, state_free_at) if free_at else state_free_at
            reasons.append(Reason("frequency_cap", f"state.{code}.cap",
                                  _cap_detail(code, cap, len(recent), at, state_free_at)))
    return reasons, free_at


def _cap_detail(code: str, cap: Cap, counted: int, at: datetime, free_at: datetime) -> str:
    attempts = "attempt" if counted == 1 else "attempts"
    return (f"{counted} {attempts} (voice and SMS together) in the {cap.window_hours} hours before "
            f"{iso_utc(at)}; {code} allows {cap.count}; free again at {iso_utc(free_at)}")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
