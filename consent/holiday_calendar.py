"""Which local dates a state bans calls on: its legal holidays, computed per year.

Most states' lists come from the `holidays` library for the state's subdivision (observed days
included). Pennsylvania's statute names its own list, kept in the rule pack; its dates are
computed here from the pack's rules.
"""
from __future__ import annotations

import calendar
from datetime import date, timedelta

import holidays as holidays_lib
from dateutil.easter import easter

from consent.rules import RulePack, StateRule


def holiday_name(pack: RulePack, rule: StateRule, day: date) -> str | None:
    """The holiday's name when `rule` bans calls on local date `day`, else None."""
    ban = rule.holiday_ban
    if ban is None or (ban.weekdays_only and day.weekday() >= 5):
        return None
    return holidays_for_year(pack, rule, day.year).get(day)


def holidays_for_year(pack: RulePack, rule: StateRule, year: int) -> dict[date, str]:
    """The entry's banned dates in `year`: as a stored decision's snapshot recorded them when the
    pack comes from one (a replay does not ask today's library), else computed."""
    resolved = pack.resolved_holidays.get((rule.code, rule.effective, year))
    if resolved is not None:
        return resolved
    key = ("holidays", rule.code, rule.effective, year)
    cached = pack.cache.get(key)
    if cached is None:
        cached = pack.remember(key, _compute(pack, rule, year))
    return cached


def _compute(pack: RulePack, rule: StateRule, year: int) -> dict[date, str]:
    ban = rule.holiday_ban
    if ban.calendar == "holidays":
        return dict(holidays_lib.US(subdiv=ban.subdivision, years=year, observed=True).items())
    if ban.calendar == "statute":
        return _statute_days(pack.statute_holidays[rule.code], year, ban.observed)
    raise ValueError(f"state {rule.code}: unknown holiday calendar {ban.calendar!r}")


def _statute_days(days: list[dict], year: int, observed: str | None) -> dict[date, str]:
    result: dict[date, str] = {}
    for spec in days:
        day = _date_of(spec, year)
        result[day] = spec["name"]
        if observed == "sunday_to_monday" and spec["rule"] == "fixed" and day.weekday() == 6:
            result.setdefault(day + timedelta(days=1), f"{spec['name']} (observed)")
    return result


def _date_of(spec: dict, year: int) -> date:
    rule = spec["rule"]
    if rule == "fixed":
        return date(year, spec["month"], spec["day"])
    if rule == "nth_weekday":
        return _nth_weekday(year, spec["month"], spec["weekday"], spec["nth"])
    if rule == "last_weekday":
        last = date(year, spec["month"], calendar.monthrange(year, spec["month"])[1])
        return last - timedelta(days=(last.weekday() - spec["weekday"]) % 7)
    if rule == "easter_offset":
        return easter(year) + timedelta(days=spec["days"])
    if rule == "election_day":
        # The Tuesday after the first Monday in November.
        return _nth_weekday(year, 11, 0, 1) + timedelta(days=1)
    raise ValueError(f"unknown holiday rule {rule!r} for {spec.get('name')!r}")


def _nth_weekday(year: int, month: int, weekday: int, nth: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (nth - 1))
