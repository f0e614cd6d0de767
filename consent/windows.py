"""Calling-window math: when, in UTC, an attempt may reach a contact with given zones and states.

For one zone and one local date, every rule that applies (the federal window, each candidate
state's hours for that weekday, closed days, holidays) is a constraint: an interval of UTC
seconds, or nothing when the day is closed. The day's window is their intersection: one interval
or none, since each constraint is a single [start, end) span of local time. The allowed set for
a contact is the intersection over its candidate zones, derived a block of UTC days at a time
(`block_spans`) and kept as sorted starts and ends, so deciding is a bisection.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from itertools import repeat
from typing import NamedTuple
from zoneinfo import ZoneInfo

from consent.holiday_calendar import holiday_name
from consent.rules import DayHours, RulePack, StateRule

DAY = 86400
SEARCH_DAYS = 400   # how far ahead next_allowed looks before giving up
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# Every HH:MM from 00:00 to 24:00: a defer's text names one or more of them.
CLOCK_LABELS = tuple(f"{minutes // 60:02d}:{minutes % 60:02d}" for minutes in range(24 * 60 + 1))


class Constraint(NamedTuple):
    """One rule's demand on one local date in one zone (a named tuple: a year of zones and
    states makes tens of thousands, and a tuple is built several times faster)."""

    rule: str                    # e.g. "federal.hours", "state.FL.hours", "state.UT.holidays"
    kind: str                    # "hours" | "closed" | "holiday"
    state: str | None
    start: float | None          # UTC seconds; None when the day is closed
    end: float | None
    hours: DayHours | None
    note: str = ""               # holiday name, or the standard-time remark


Span = tuple[float, float]


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


# --- allowed instants, a block of UTC days at a time -------------------------------------------
# Whether an instant is allowed, and when the next allowed one comes, need the windows only, not
# their explanation: they are derived for BLOCK_DAYS UTC days at once and kept as sorted starts
# and ends to bisect. A year of random instants then costs a dozen blocks per contact's place
# instead of a derivation per zone and local date.

BLOCK_DAYS = 32
BLOCK = BLOCK_DAYS * DAY
UNBOUNDED: Span = (float("-inf"), float("inf"))
CLOSED: Span = (float("inf"), float("-inf"))       # leaves nothing in any intersection
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@dataclass(frozen=True, slots=True)
class RuleDays:
    """One rule (the federal one, or one state's entries) in one zone, on each local date a
    block can touch: its constraints, and the window they leave as starts and ends (UNBOUNDED
    when the state has no entry that day, CLOSED when nothing is left)."""

    constraints: tuple[tuple[Constraint, ...], ...]
    starts: tuple[float, ...]
    ends: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class BlockSpans:
    """The allowed spans within one block, clipped to it (starts[i] < ends[i] <= starts[i+1]),
    and the rules behind them per candidate zone (federal first, then each state's)."""

    starts: list[float]
    ends: list[float]
    first_ordinal: int                          # the first local date the rules cover
    rules: tuple[tuple[RuleDays, tuple[RuleDays, ...]], ...]    # per zone: federal, each state's

    def holds(self, ts: float) -> bool:
        index = bisect_right(self.starts, ts) - 1
        return index >= 0 and ts < self.ends[index]

    def first_from(self, ts: float) -> float | None:
        """The earliest allowed instant at or after `ts` within this block."""
        index = bisect_right(self.ends, ts)
        return max(self.starts[index], ts) if index < len(self.ends) else None

    def excluding(self, zone_index: int, local: datetime, ts: float) -> list[Constraint]:
        """The constraints that exclude `ts` in one zone (`local` is `ts` there), federal
        first: what a defer names. A state row that restates the federal window adds nothing."""
        offset = local.toordinal() - self.first_ordinal
        federal_days, state_days = self.rules[zone_index]
        federal = federal_days.constraints[offset][0]
        federal_start, federal_end = federal.start, federal.end
        found = [] if federal_start <= ts < federal_end else [federal]
        for days in state_days:
            for constraint in days.constraints[offset]:
                start = constraint.start
                if (start is None or not start <= ts < constraint.end) and not (
                        start == federal_start and constraint.end == federal_end and constraint.kind == "hours"):
                    found.append(constraint)
        return found


def block_of(ts: float) -> int:
    return int(ts // BLOCK)


def block_spans(pack: RulePack, zones: tuple[str, ...], states: tuple[str, ...], block: int) -> BlockSpans:
    """Every candidate zone inside its own day's window, over UTC days [block*BLOCK_DAYS, ...)."""
    low, high = block * BLOCK, (block + 1) * BLOCK
    rules = tuple((rule_days(pack, zone, None, block), tuple(rule_days(pack, zone, code, block) for code in states))
                  for zone in zones)
    allowed: list[Span] | None = None       # no zone: no window applies
    for federal, per_state in rules:
        spans = _zone_windows((federal, *per_state), low, high)
        allowed = spans if allowed is None else intersect_spans(allowed, spans)
    if allowed is None:
        allowed = [(low, high)]
    return BlockSpans([start for start, _ in allowed], [end for _, end in allowed], _first_ordinal(block), rules)


def _zone_windows(zone_rules: tuple[RuleDays, ...], low: float, high: float) -> list[Span]:
    # One zone's windows, local date after local date: each the intersection of every rule's
    # (a CLOSED rule's start is above any end, so nothing is left that day).
    starts = map(max, repeat(low), *(days.starts for days in zone_rules))
    ends = map(min, repeat(high), *(days.ends for days in zone_rules))
    return [(start, end) for start, end in zip(starts, ends) if start < end]


def _first_ordinal(block: int) -> int:
    # Local dates run at most a day either side of the UTC ones (offsets are under 24 h).
    return EPOCH_ORDINAL + block * BLOCK_DAYS - 1


def rule_days(pack: RulePack, zone: str, code: str | None, block: int) -> RuleDays:
    """One rule's constraints and window (the federal rule's when `code` is None) on each local
    date the block can touch, kept per pack: contacts share single states far more than sets."""
    key = ("rule_days", zone, code, block)
    found = pack.block_cache.get(key)
    if found is None:
        first = date.fromordinal(_first_ordinal(block))
        constraints = tuple(_compute_rule_constraints(pack, zone, code, first + timedelta(days=offset))
                            for offset in range(BLOCK_DAYS + 2))
        spans = [_intersection(day) for day in constraints]
        found = pack.remember_block(key, RuleDays(constraints, tuple(start for start, _ in spans),
                                                  tuple(end for _, end in spans)))
    return found


def _intersection(constraints: tuple[Constraint, ...]) -> Span:
    start, end = UNBOUNDED
    for constraint in constraints:
        if constraint.start is None:
            return CLOSED
        start, end = max(start, constraint.start), min(end, constraint.end)
    return (start, end) if start < end else CLOSED


def cached_block_spans(pack: RulePack, zones: tuple[str, ...], states: tuple[str, ...], block: int) -> BlockSpans:
    """block_spans, kept per pack: the gate's places and the scheduler's allow expiry share them."""
    key = ("block_spans", zones, states, block)
    spans = pack.block_cache.get(key)
    if spans is None:
        spans = pack.remember_block(key, block_spans(pack, zones, states, block))
    return spans


def allowed_spans(pack: RulePack, zones: tuple[str, ...], states: tuple[str, ...], utc_day: int) -> tuple[Span, ...]:
    """Allowed UTC spans inside [utc_day*DAY, (utc_day+1)*DAY), sorted."""
    spans = cached_block_spans(pack, zones, states, utc_day // BLOCK_DAYS)
    day_start, day_end = utc_day * DAY, (utc_day + 1) * DAY
    return tuple((max(start, day_start), min(end, day_end)) for start, end in zip(spans.starts, spans.ends)
                 if start < day_end and end > day_start)


def intersect_spans(a: list[Span], b: list[Span]) -> list[Span]:
    """The overlap of two sorted lists of disjoint spans."""
    result: list[Span] = []
    i, j, len_a, len_b = 0, 0, len(a), len(b)
    while i < len_a and j < len_b:
        (a_start, a_end), (b_start, b_end) = a[i], b[j]
        start = a_start if a_start > b_start else b_start
        end = a_end if a_end < b_end else b_end
        if start < end:
            result.append((start, end))
        if a_end < b_end:
            i += 1
        else:
            j += 1
    return result


def first_allowed(spans_of_block: Callable[[int], BlockSpans], ts: float) -> float | None:
    """The earliest allowed instant at or after `ts`, or None within SEARCH_DAYS UTC days from
    `ts`'s own: a span that opens later is not looked for."""
    limit = (int(ts // DAY) + SEARCH_DAYS) * DAY
    block = block_of(ts)
    while block * BLOCK < limit:
        found = spans_of_block(block).first_from(ts)
        if found is not None:
            return found if found < limit else None
        block += 1
    return None


def next_allowed(pack: RulePack, zones: tuple[str, ...], states: tuple[str, ...], ts: float) -> float | None:
    """The earliest instant at or after `ts` inside every window, or None within SEARCH_DAYS."""
    return first_allowed(lambda block: cached_block_spans(pack, zones, states, block), ts)


def describe(pack: RulePack, constraint: Constraint, local: datetime, ts: float | None = None) -> str:
    """A sentence a compliance reviewer can check against the rule; `ts` is `local` in UTC
    seconds when the caller has it (converting back costs more than the rest).

    Not cached here: the gate keeps each minute's reasons, and a key short of the local date
    would mix up days (a holiday's date, a closed day's weekday are not in the constraint).
    """
    return _describe(constraint, local, local.timestamp() if ts is None else ts)


def _describe(constraint: Constraint, local: datetime, ts: float) -> str:
    where = f"in {constraint.state}" if constraint.state else "under the federal rule"
    clock = f"{CLOCK_LABELS[local.hour * 60 + local.minute]} {local.tzname()}"
    weekday = WEEKDAY_NAMES[local.weekday()]
    if constraint.kind == "holiday":
        return f"{local.date().isoformat()} is {constraint.note} ({local.tzinfo.key}): no calls {where}"
    if constraint.kind == "closed":
        return f"{weekday} {clock}: no calls on {weekday}s {where}"
    if ts < constraint.start:
        relation = f"before {CLOCK_LABELS[constraint.hours.start]}"
    elif ts > constraint.end:
        relation = f"after {CLOCK_LABELS[constraint.hours.end]}"
    else:
        relation = f"at the {CLOCK_LABELS[constraint.hours.end]} close"
    suffix = f" ({constraint.note})" if constraint.note else ""
    day = f"{weekday} " if constraint.state else ""
    return f"{day}{clock} is {relation} {where}{suffix}"
