"""What a stored decision needs to be replayed after an upgrade: the dates it resolved.

A rule pack says "Utah bans calls on its legal holidays"; which dates those are comes from the
`holidays` library (or, for Pennsylvania, from this package's own calendar code), and which of a
state's entries is in force on a date comes from the pack's effective dates as this code reads
them. A library or code upgrade can change either answer, and a replay would then differ from
what was decided. So, per rule pack version and calendar year a decision touched, the resolved
dates are kept beside the pack (`resolved_year`), and a replay reads them back
(`pack_from_snapshot`) instead of asking the library again.

Likewise where the contact may be: phonenumbers and zipcodes place a number and an address, and
an upgrade of either can move them. Each new decision is stored with the location it resolved
(`location_snapshot`: validity, the number's zones before any override, the address's zones,
the states, the region), and replay reads it back (`location_from_snapshot`) instead of placing
the number again; the rule pack's zone overrides still apply, from the pack the decision named.

A snapshot is JSON: `{"format": SNAPSHOT_FORMAT, "rules_version": ..., "pack": {...},
"years": {"2026": {"holidays": {"UT@2021-01-01": {"2026-07-24": "Pioneer Day"}},
"entries": {"UT": ["2021-01-01"]}}}}`. A plain pack (what older decisions were stored with)
replays as before: derived again with today's library.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from consent.holiday_calendar import holidays_for_year
from consent.rules import RulePack, canonical_json
from consent.types import Location
from consent.windows import BLOCK_DAYS, SEARCH_DAYS

SNAPSHOT_FORMAT = "outbound.rule-pack-snapshot/1"
# The gate derives windows a block of UTC days at a time, and local dates run a day either side
# of UTC ones: a decision reads dates this far around the instants it looks at.
_MARGIN = timedelta(days=BLOCK_DAYS + 2)
_SEARCH = timedelta(days=SEARCH_DAYS)


def years_involved(at: datetime, verdict: str, next_allowed_at: datetime | None) -> range:
    """The calendar years whose dates a decision at `at` may have read: around `at`, and up to
    its next allowed instant (or the whole search, for a defer that found none)."""
    until = next_allowed_at or (at + _SEARCH if verdict == "defer" else at)
    return range((at - _MARGIN).year, (until + _MARGIN).year + 1)


def years_of_stored(scenario: dict, decision: dict) -> range:
    """years_involved for a decision as stored (contract JSON)."""
    at = datetime.fromisoformat(scenario["at"])
    following = decision.get("next_allowed_at")
    return years_involved(at, decision.get("verdict", ""), datetime.fromisoformat(following) if following else None)


def resolved_year(pack: RulePack, year: int) -> dict[str, Any]:
    """Every state entry in force on some date of `year`, and the holidays each bans calls on."""
    entries = _entries_in_force(pack, year)
    holidays: dict[str, dict[str, str]] = {}
    for code, rules in sorted(entries.items()):
        for rule in rules:
            if rule.holiday_ban is not None:
                days = holidays_for_year(pack, rule, year)
                holidays[f"{code}@{rule.effective.isoformat()}"] = {
                    day.isoformat(): name for day, name in sorted(days.items())}
    return {"holidays": holidays,
            "entries": {code: [rule.effective.isoformat() for rule in rules] for code, rules in sorted(entries.items())}}


def _entries_in_force(pack: RulePack, year: int) -> dict[str, list]:
    """Per state, its entries in force on some date of `year`, as `state_rule` picks them."""
    first = date(year, 1, 1)
    days = [first + timedelta(days=offset) for offset in range((date(year + 1, 1, 1) - first).days)]
    found: dict[str, list] = {}
    for code in pack.state_codes():
        rules = []
        for day in days:
            rule = pack.state_rule(code, day)
            if rule is not None and (not rules or rules[-1] is not rule):
                rules.append(rule)
        if rules:
            found[code] = rules
    return found


def snapshot_json(pack_json: str, rules_version: str, years: dict[int, str]) -> str:
    """A stored pack and the resolved years kept beside it, as one snapshot."""
    return canonical_json({"format": SNAPSHOT_FORMAT, "rules_version": rules_version,
                           "pack": json.loads(pack_json),
                           "years": {str(year): json.loads(text) for year, text in sorted(years.items())}})


def pack_from_snapshot(text: str) -> RulePack:
    """The pack a decision was made under: with the dates it resolved, read back, and the
    version it was stored under, when `text` is a snapshot; else a plain pack as before."""
    data = json.loads(text)
    if data.get("format") != SNAPSHOT_FORMAT:
        return RulePack(data)
    pack = RulePack(data["pack"])
    pack.version = data["rules_version"]
    for year_text, resolved in data["years"].items():
        year = int(year_text)
        pack.resolved_entries[year] = {code: tuple(dates) for code, dates in resolved["entries"].items()}
        for key, days in resolved["holidays"].items():
            code, effective = key.split("@")
            pack.resolved_holidays[code, date.fromisoformat(effective), year] = {
                date.fromisoformat(day): name for day, name in days.items()}
    return pack


def entries_differ(pack: RulePack, years: Iterable[int]) -> list[str]:
    """Where the entries this code finds in force differ from those a snapshot recorded."""
    differences = []
    for year in years:
        recorded = pack.resolved_entries.get(year)
        if recorded is None:
            continue
        now = {code: tuple(rule.effective.isoformat() for rule in rules)
               for code, rules in _entries_in_force(pack, year).items()}
        if now != recorded:
            changed = sorted(code for code in set(now) | set(recorded) if now.get(code) != recorded.get(code))
            differences.append(f"entries in force in {year} for {', '.join(changed)}: stored "
                               f"{[recorded.get(code) for code in changed]}, now {[now.get(code) for code in changed]}")
    return differences


# --- the location a decision resolved -----------------------------------------------------------

LOCATION_FORMAT = "outbound.location/1"


def location_snapshot(location: Location) -> dict[str, Any]:
    """The location as stored beside a decision (JSON)."""
    return {"format": LOCATION_FORMAT, "e164": location.e164, "timezones": list(location.timezones),
            "states": list(location.states), "region": location.region,
            "number_zones": None if location.number_zones is None else list(location.number_zones),
            "address_zones": None if location.address_zones is None else list(location.address_zones)}


def location_from_snapshot(data: dict[str, Any]) -> Location:
    """The stored location back; ValueError for anything else (a replay then says so)."""
    if not isinstance(data, dict) or data.get("format") != LOCATION_FORMAT:
        raise ValueError(f"not a stored location ({LOCATION_FORMAT})")

    def zones(name: str) -> tuple[str, ...] | None:
        value = data.get(name)
        return None if value is None else tuple(value)
    return Location(e164=data["e164"], timezones=tuple(data["timezones"]), states=tuple(data["states"]),
                    region=data.get("region"), number_zones=zones("number_zones"),
                    address_zones=zones("address_zones"))
