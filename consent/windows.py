"""Calling-window math: when, in UTC, an attempt may reach a contact with given zones and states.

For one zone and one local date, every rule that applies (the federal window, each candidate
state's hours for that weekday, closed days, holidays) is a constraint: an interval of UTC
seconds, or nothing when the day is closed. The day's window is their intersection: one interval
or none, since each constraint is a single [start, end) span of local time. The allowed set for
a contact is the intersection over its candidate zones. Results are cached in the pack per
(zones, states, UTC day), so deciding is a dictionary lookup and a comparison.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from consent.holiday_calendar import holiday_name
from consent.rules import DayHours, RulePack, StateRule

DAY = 86400
SEARCH_DAYS = 400   # how far ahead next_allowed looks before giving up
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True, slots=True)
class Constraint:
    """One rule's demand on one local date in one zone."""

    rule: str                    # e.g. "federal.hours", "state.FL.hours", "state.UT.holidays"
    kind: str                    # "hours" | "closed" | "holiday"
    state: str | None
    start: float | None          # UTC seconds; None when the day is closed
    end: float | None
    hours: DayHours | None
    note: str = ""               # holiday name, or the standard-time remark


Span = tuple[float, float]


def zone_day_constraints(pack: RulePack, zone: str, states: tuple[str, ...], day: date) -> tuple[Constraint, ...]:
    """The federal constraint first, then each candidate state's, for one zone and local date."""
    found = [*_rule_constraints(pack, zone, None, day)]
    for code in states:
        found.extend(_rule_constraints(pack, zone, code, day))
    return tuple(found)


def _rule_constraints(pack: RulePack, zone: str, code: str | None, day: date) -> tuple[Constraint, ...]:
    # Cached per single state, not per combination: contacts share states far more than sets.
    key = ("constraints", zone, code, day)
    cached = pack.cache.get(key)
    if cached is None:
        cached = pack.remember(key, _compute_rule_constraints(pack, zone, code, day))
    return cached


def _compute_rule_constraints(pack: RulePack, zone: str, code: str | None, day: date) -> tuple[Constraint, ...]:
    if code is None:
        federal = pack.federal.hours
        return (Constraint("federal.hours", "hours", None, *_local_span(zone, day, federal), federal),)
    rule = pack.state_rule(code, day)
    return () if rule is None else tuple(_state_constraints(pack, rule, zone, day))


def _state_constraints(pack: RulePack, rule: StateRule, zone: str, day: date) -> list[Constraint]:
    found = []
    holiday = holiday_name(pack, rule, day)
    if holiday:
        found.append(Constraint(f"state.{rule.code}.holidays", "holiday", rule.code, None, None, None, holiday))
    hours = rule.hours_on(day.weekday())
    if hours is None:
        found.append(Constraint(f"state.{rule.code}.hours", "closed", rule.code, None, None, None))
        return found
    start, end = _local_span(zone, day, hours)
    note = ""
    if rule.standard_time:
        std_start, std_end = _standard_span(zone_info(zone), day, hours)
        if (std_start, std_end) != (start, end):
            note = "hours are in standard time"
        start, end = max(start, std_start), min(end, std_end)
    found.append(Constraint(f"state.{rule.code}.hours", "hours", rule.code, start, end, hours, note))
    return found


@lru_cache(maxsize=None)
def zone_info(zone: str) -> ZoneInfo:
    # ZoneInfo keeps only a few instances alive; re-reading tzdata files is the slow part.
    return ZoneInfo(zone)


def _local_span(zone: str, day: date, hours: DayHours) -> Span:
    return local_instant(zone, day, hours.start), local_instant(zone, day, hours.end)


@lru_cache(maxsize=1 << 18)
def local_instant(zone: str, day: date, minutes: int) -> float:
    """UTC seconds of a local wall-clock time; shared by every state whose window uses it."""
    if minutes == 24 * 60:
        day, minutes = day + timedelta(days=1), 0
    return datetime(day.year, day.month, day.day, minutes // 60, minutes % 60, tzinfo=zone_info(zone)).timestamp()


def _standard_span(tz: ZoneInfo, day: date, hours: DayHours) -> Span:
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=tz)
    standard_offset = noon.utcoffset() - (noon.dst() or timedelta(0))
    midnight_utc = datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()
    offset = standard_offset.total_seconds()
    return midnight_utc + hours.start * 60 - offset, midnight_utc + hours.end * 60 - offset


@dataclass(frozen=True, slots=True)
class ZoneDay:
    """What the rules say about one zone on one local date, for one set of candidate states."""

    window: Span | None                  # the intersection of every constraint; None when closed
    explaining: tuple[Constraint, ...]   # the constraints a defer can name (federal first)


def zone_day(pack: RulePack, zone: str, states: tuple[str, ...], day: date) -> ZoneDay:
    # Both the allow check and a defer's explanation need this per (zone, states, local date):
    # derive it once instead of re-assembling the constraints on every decision.
    key = ("zone_day", zone, states, day)
    found = pack.cache.get(key)
    if found is None:
        found = pack.remember(key, _zone_day(zone_day_constraints(pack, zone, states, day)))
    return found


def _zone_day(constraints: tuple[Constraint, ...]) -> ZoneDay:
    return ZoneDay(_intersection(constraints), _explaining(constraints))


def _intersection(constraints: tuple[Constraint, ...]) -> Span | None:
    start, end = float("-inf"), float("inf")
    for constraint in constraints:
        if constraint.start is None:
            return None
        start, end = max(start, constraint.start), min(end, constraint.end)
    return (start, end) if start < end else None


def _explaining(constraints: tuple[Constraint, ...]) -> tuple[Constraint, ...]:
    # A state row that restates the federal window explains nothing more.
    federal = constraints[0]
    return (federal, *(constraint for constraint in constraints[1:]
                       if not (constraint.kind == "hours" and (constraint.start, constraint.end) == (federal.start, federal.end))))


def zone_day_window(pack: RulePack, zone: str, states: tuple[str, ...], day: date) -> Span | None:
    """The intersection of every constraint on that local date, or None when nothing is left."""
    return zone_day(pack, zone, states, day).window


def allowed_spans(pack: RulePack, zones: tuple[str, ...], states: tuple[str, ...], utc_day: int) -> tuple[Span, ...]:
    """Allowed UTC spans inside [utc_day*DAY, (utc_day+1)*DAY), sorted."""
    key = ("spans", zones, states, utc_day)
    cached = pack.cache.get(key)
    if cached is None:
        cached = pack.remember(key, _allowed_spans(pack, zones, states, utc_day))
    return cached


def _allowed_spans(pack: RulePack, zones: tuple[str, ...], states: tuple[str, ...], utc_day: int) -> tuple[Span, ...]:
    day_start, day_end = utc_day * DAY, (utc_day + 1) * DAY
    result: list[Span] = [(day_start, day_end)]
    for zone in zones:
        result = intersect_spans(result, _zone_spans(pack, zone, states, day_start, day_end))
    return tuple(result)


def _zone_spans(pack: RulePack, zone: str, states: tuple[str, ...], day_start: int, day_end: int) -> list[Span]:
    tz = zone_info(zone)
    first = datetime.fromtimestamp(day_start, tz).date()
    last = datetime.fromtimestamp(day_end - 1, tz).date()
    spans = []
    day = first
    while day <= last:
        window = zone_day_window(pack, zone, states, day)
        if window is not None:
            start, end = max(window[0], day_start), min(window[1], day_end)
            if start < end:
                spans.append((start, end))
        day += timedelta(days=1)
    return spans


def intersect_spans(a: list[Span], b: list[Span]) -> list[Span]:
    """The overlap of two sorted lists of disjoint spans."""
    result, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            result.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return result


def is_allowed(pack: RulePack, zones: tuple[str, ...], states: tuple[str, ...], ts: float) -> bool:
    """Inside the day's window in every candidate zone (each zone on its own local date)."""
    for zone in zones:
        window = zone_day_window(pack, zone, states, datetime.fromtimestamp(ts, zone_info(zone)).date())
        if window is None or not window[0] <= ts < window[1]:
            return False
    return True


def next_allowed(pack: RulePack, zones: tuple[str, ...], states: tuple[str, ...], ts: float) -> float | None:
    """The earliest instant at or after `ts` inside every window, or None within SEARCH_DAYS."""
    return first_allowed(lambda utc_day: allowed_spans(pack, zones, states, utc_day), ts)


def first_allowed(spans_of_day: Callable[[int], tuple[Span, ...]], ts: float) -> float | None:
    """next_allowed over any source of each UTC day's allowed spans (the gate keeps its own)."""
    first_day = int(ts // DAY)
    for utc_day in range(first_day, first_day + SEARCH_DAYS):
        for start, end in spans_of_day(utc_day):
            if end > ts:
                return max(start, ts)
    return None


def violated(pack: RulePack, zones: tuple[str, ...], states: tuple[str, ...], at: datetime) -> list[tuple[str, Constraint, datetime]]:
    """Every (zone, constraint, local time) that excludes `at`: the explanation of a defer."""
    ts = at.timestamp()
    found = []
    for zone in zones:
        local = at.astimezone(zone_info(zone))
        for constraint in zone_day(pack, zone, states, local.date()).explaining:
            if constraint.start is None or not constraint.start <= ts < constraint.end:
                found.append((zone, constraint, local))
    return found


def describe(pack: RulePack, constraint: Constraint, local: datetime, ts: float | None = None) -> str:
    """A sentence a compliance reviewer can check against the rule; `ts` is `local` in UTC
    seconds when the caller has it (converting back costs more than the rest).

    Not cached here: the gate keeps each minute's reasons, and a key short of the local date
    would mix up days (a holiday's date, a closed day's weekday are not in the constraint).
    """
    return _describe(constraint, local, local.timestamp() if ts is None else ts)


def _describe(constraint: Constraint, local: datetime, ts: float) -> str:
    where = f"in {constraint.state}" if constraint.state else "under the federal rule"
    # Formatting the fields: what `%H:%M` prints, without strftime's cost.
    clock = f"{local.hour:02d}:{local.minute:02d} {local.tzname()}"
    weekday = WEEKDAY_NAMES[local.weekday()]
    if constraint.kind == "holiday":
        return f"{local.date().isoformat()} is {constraint.note} ({local.tzinfo.key}): no calls {where}"
    if constraint.kind == "closed":
        return f"{weekday} {clock}: no calls on {weekday}s {where}"
    start_label, end_label = constraint.hours.label().split("-")
    if ts < constraint.start:
        relation = f"before {start_label}"
    elif ts > constraint.end:
        relation = f"after {end_label}"
    else:
        relation = f"at the {end_label} close"
    suffix = f" ({constraint.note})" if constraint.note else ""
    day = f"{weekday} " if constraint.state else ""
    return f"{day}{clock} is {relation} {where}{suffix}"
