"""When an allow stops being good, and when a campaign's own hours are open.

Both answers are built from spans of UTC seconds, one UTC day at a time:

- the legal window comes from `consent.windows.allowed_spans` (the rule pack's federal and state
  hours, holidays and closed days, intersected over every candidate zone);
- a campaign's hours and dates are the same kind of constraint, in the contact's local time, in
  every candidate zone (a contact that may be in two zones must be inside the hours in both).

A local evening window crosses UTC midnight (21:00 EDT is 01:00 UTC), so spans that touch at a
day boundary are merged before asking where one ends.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone

from consent import windows
from consent.rules import RulePack
from consent.windows import intersect_spans

DAY = windows.DAY
SEARCH_DAYS = 400            # as far ahead as the gate looks for a next allowed instant
Span = tuple[float, float]
SpansOfDay = Callable[[int], tuple[Span, ...]]


def legal_window_close(pack: RulePack, zones: tuple[str, ...], states: tuple[str, ...],
                       at: datetime) -> datetime | None:
    """The end of the legal span holding `at`: the instant the gate's allow stops being good.
    None when `at` is not inside any span (the gate would not have allowed)."""
    return _close_of(lambda day: windows.allowed_spans(pack, zones, states, day), at)


def campaign_spans(hours: tuple[int, int] | None, start_date: date | None, end_date: date | None,
                   zones: tuple[str, ...]) -> SpansOfDay:
    """The campaign's open spans (hours and dates, local in every zone) within one UTC day."""
    def spans_of_day(utc_day: int) -> tuple[Span, ...]:
        result: list[Span] = [(utc_day * DAY, (utc_day + 1) * DAY)]
        for zone in zones:
            result = intersect_spans(result, _zone_campaign_spans(hours, start_date, end_date, zone, utc_day))
        return tuple(result)
    return spans_of_day


def _zone_campaign_spans(hours: tuple[int, int] | None, start_date: date | None, end_date: date | None,
                         zone: str, utc_day: int) -> list[Span]:
    day_start, day_end = utc_day * DAY, (utc_day + 1) * DAY
    tz = windows.zone_info(zone)
    local_day = datetime.fromtimestamp(day_start, tz).date()
    last_local_day = datetime.fromtimestamp(day_end - 1, tz).date()
    spans = []
    while local_day <= last_local_day:
        if (start_date is None or local_day >= start_date) and (end_date is None or local_day <= end_date):
            open_minute, close_minute = hours or (0, 24 * 60)
            start = max(windows.local_instant(zone, local_day, open_minute), day_start)
            end = min(windows.local_instant(zone, local_day, close_minute), day_end)
            if start < end:
                spans.append((start, end))
        local_day += timedelta(days=1)
    return spans


def next_opening(spans_of_day: SpansOfDay, at: datetime) -> datetime | None:
    """The earliest instant at or after `at` inside a span; None within SEARCH_DAYS (e.g. after
    the campaign's end date)."""
    ts = at.timestamp()
    first_day = int(ts // DAY)
    for utc_day in range(first_day, first_day + SEARCH_DAYS):
        for start, end in spans_of_day(utc_day):
            if end > ts:
                return at if start <= ts else datetime.fromtimestamp(start, timezone.utc)
    return None


def opening_close(spans_of_day: SpansOfDay, at: datetime) -> datetime | None:
    """The end of the span holding `at`, or None when `at` is outside every span."""
    return _close_of(spans_of_day, at)


def _close_of(spans_of_day: SpansOfDay, at: datetime) -> datetime | None:
    ts = at.timestamp()
    first_day = int(ts // DAY)
    end: float | None = None
    for utc_day in range(first_day, first_day + 3):
        for start, stop in spans_of_day(utc_day):
            if end is None and start <= ts < stop:
                end = stop
            elif end is not None and start == end:
                end = stop                       # the same local window, continued past UTC midnight
        if end is None or end < (utc_day + 1) * DAY:
            break
    return None if end is None else datetime.fromtimestamp(end, timezone.utc)


