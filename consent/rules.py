"""The rule pack: federal and state rules loaded from data (`consent/rule_packs/us.toml`).

Code here interprets the data; it never restates a rule. `RulePack.version` is a stable hash of
the pack, of the holiday data it draws on and of the gate's logic version, so a stored decision
names exactly what it was decided under.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from importlib import resources
from typing import Any

import zoneinfo

import holidays as holidays_lib

# Bump when the gate's interpretation of a pack changes, so replays can tell.
GATE_LOGIC_VERSION = "1"
DEFAULT_PACK = "us.toml"
# Derived values kept per pack before it starts afresh: a long-running worker keeps meeting new
# days, and every entry can be derived again from the pack, so dropping them changes no answer.
CACHE_LIMIT = 400_000
# Values per block of days (a rule's constraints in one zone, a place's spans) weigh 2-20 KB
# each: kept apart, under a limit of their own (about 150 MB at most).
BLOCK_CACHE_LIMIT = 8_192
# Every row of shared/reference/state-rules.csv (the 50 states, DC, PR, GU and VI): a pack that
# lacks one would let that state's contacts through under the federal rule alone.
REQUIRED_STATES = frozenset({
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
    "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM",
    "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA",
    "WV", "WI", "WY", "PR", "GU", "VI"})


@dataclass(frozen=True, slots=True)
class DayHours:
    """[start, end) in minutes after local midnight."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class HolidayBan:
    calendar: str              # "holidays" (the library) | "statute" (the pack's own list)
    subdivision: str | None
    weekdays_only: bool
    observed: str | None


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `count` attempts (calls and texts together) in any rolling `window_hours`."""

    count: int
    window_hours: int
    window: timedelta = field(init=False, repr=False, compare=False)   # derived once: read per decision

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", timedelta(hours=self.window_hours))


@dataclass(frozen=True, slots=True)
class StateRule:
    code: str
    name: str
    effective: date
    scope: str
    weekday: DayHours | None   # None: closed all day
    saturday: DayHours | None
    sunday: DayHours | None
    standard_time: bool
    holiday_ban: HolidayBan | None
    cap: Cap | None
    automated_needs_written_consent: bool
    source: str

    def hours_on(self, weekday: int) -> DayHours | None:
        if weekday == 5:
            return self.saturday
        if weekday == 6:
            return self.sunday
        return self.weekday


@dataclass(frozen=True, slots=True)
class ZoneOverride:
    """The zones of every number under `prefix` (national digits: an area code, or an area code
    and exchange), replacing what phonenumbers says, with the source that shows it."""

    prefix: str
    zones: tuple[str, ...]
    source: str


class ZoneOverrides:
    """A pack's zone overrides by prefix. Hashed by identity (a pack holds one), so location
    lookups can be cached on it cheaply."""

    __slots__ = ("by_prefix", "prefixes")

    def __init__(self, overrides: tuple[ZoneOverride, ...] = ()):
        self.by_prefix = {override.prefix: override for override in overrides}
        self.prefixes = frozenset(self.by_prefix)

    def zones_for(self, national: str) -> tuple[str, ...] | None:
        """The overriding zones of a national number (or its first digits), the exchange's
        before the area code's; None when no override covers it."""
        found = self.by_prefix.get(national[:6]) or self.by_prefix.get(national[:3])
        return None if found is None else found.zones


@dataclass(frozen=True, slots=True)
class FederalRule:
    effective: date
    hours: DayHours
    source: str
    dnc_scrub_max_age_days: int
    ebr_transaction_months: int
    ebr_inquiry_months: int


class RulePackError(ValueError):
    """The pack data is malformed; the message names the entry and field."""


class RulePack:
    """An immutable rule pack plus per-pack caches of derived values (windows, holidays)."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        for section in ("federal", "state"):
            if section not in data:
                raise RulePackError(f"the pack has no [{section}] section")
        self.federal = _federal(data["federal"])
        self.statute_holidays: dict[str, list[dict]] = {
            code: entry["days"] for code, entry in data.get("statute_holidays", {}).items()}
        self._states = _states(data["state"])
        _check_complete(data, self._states)
        self.zone_overrides = ZoneOverrides(_zone_overrides(data.get("zone_override", [])))
        self._effective_dates = {code: [r.effective for r in rules] for code, rules in self._states.items()}
        self.version = _version(data)
        # Derived once here rather than on every telemarketing decision.
        self.dnc_scrub_max_age = timedelta(days=self.federal.dnc_scrub_max_age_days)
        self.cache: dict[Any, Any] = {}     # derived values, keyed by the deriving module
        self.block_cache: dict[Any, Any] = {}    # the same, for values covering a block of days
        self.places: dict[Any, Any] = {}    # consent.gate's memos per candidate zones and states
        # Dates a stored decision resolved, read back from its snapshot for replay (consent.snapshot):
        # holidays per (state, entry's effective date, year), and the entries in force per year.
        self.resolved_holidays: dict[tuple[str, date, int], dict[date, str]] = {}
        self.resolved_entries: dict[int, dict[str, tuple[str, ...]]] = {}

    def remember(self, key: Any, value: Any) -> Any:
        """Keep a derived value in `cache` (bounded by CACHE_LIMIT) and return it."""
        return keep_bounded(self.cache, CACHE_LIMIT, key, value)

    def remember_block(self, key: Any, value: Any) -> Any:
        """Keep a value covering a block of days in `block_cache` (bounded by BLOCK_CACHE_LIMIT)."""
        return keep_bounded(self.block_cache, BLOCK_CACHE_LIMIT, key, value)

    def state_rule(self, code: str, on: date) -> StateRule | None:
        """The state's entry in force on `on`, or None when the state adds nothing that day."""
        dates = self._effective_dates.get(code)
        if not dates:
            return None
        index = bisect.bisect_right(dates, on) - 1
        return self._states[code][index] if index >= 0 else None

    def ever_capped(self, states: tuple[str, ...]) -> bool:
        """Whether any entry, of any date, of these states has a frequency cap."""
        return any(rule.cap for code in states for rule in self._states.get(code, ()))

    def settled_from(self, states: tuple[str, ...]) -> date:
        """The first date on which each of these states' latest entry is in force (from then
        on `state_rule` answers the same for every date); date.min when none has an entry."""
        return max((self._states[code][-1].effective for code in states if code in self._states), default=date.min)

    def state_codes(self) -> tuple[str, ...]:
        return tuple(sorted(self._states))

    def to_json(self) -> str:
        return canonical_json(self.data)

    @classmethod
    def from_json(cls, text: str) -> RulePack:
        return cls(json.loads(text))


def keep_bounded(memo: dict, limit: int, key: Any, value: Any) -> Any:
    """Store `value` under `key` and return it; a memo that holds `limit` entries starts afresh
    first (every entry can be derived again, so dropping them changes no answer)."""
    if len(memo) >= limit:
        memo.clear()
    memo[key] = value
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@lru_cache(maxsize=4)
def load_pack(name: str = DEFAULT_PACK) -> RulePack:
    text = resources.files("consent").joinpath("rule_packs", name).read_text(encoding="utf-8")
    return RulePack(tomllib.loads(text))


def _version(data: dict[str, Any]) -> str:
    material = canonical_json({"pack": data, "holidays": holidays_lib.__version__,
                               "logic": GATE_LOGIC_VERSION})
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:16]


def _minutes(text: str, where: str) -> int:
    try:
        hours, minutes = text.split(":")
        value = int(hours) * 60 + int(minutes)
    except ValueError:
        raise RulePackError(f"{where}: {text!r} is not HH:MM") from None
    if not 0 <= value <= 24 * 60:
        raise RulePackError(f"{where}: {text!r} is outside 00:00-24:00")
    return value


def _day_hours(value: Any, where: str) -> DayHours | None:
    if value == "closed":
        return None
    if not (isinstance(value, list) and len(value) == 2):
        raise RulePackError(f"{where}: expected [\"HH:MM\", \"HH:MM\"] or \"closed\", got {value!r}")
    hours = DayHours(_minutes(value[0], where), _minutes(value[1], where))
    if hours.start >= hours.end:
        raise RulePackError(f"{where}: window {value!r} is empty")
    return hours


def _federal(entry: dict[str, Any]) -> FederalRule:
    try:
        hours = _day_hours(entry["hours"], "federal.hours")
        if hours is None:
            raise RulePackError("federal.hours cannot be closed")
        return FederalRule(
            effective=date.fromisoformat(entry["effective"]), hours=hours, source=_source(entry, "federal"),
            dnc_scrub_max_age_days=int(entry["dnc_scrub_max_age_days"]),
            ebr_transaction_months=int(entry["ebr_transaction_months"]),
            ebr_inquiry_months=int(entry["ebr_inquiry_months"]))
    except KeyError as missing:
        raise RulePackError(f"federal: missing field {missing}") from None


def _holiday_ban(value: dict[str, Any] | None) -> HolidayBan | None:
    if not value:
        return None
    return HolidayBan(calendar=value["calendar"], subdivision=value.get("subdivision"),
                      weekdays_only=bool(value.get("weekdays_only", False)),
                      observed=value.get("observed"))


def _state(entry: dict[str, Any]) -> StateRule:
    where = f"state {entry.get('code', '?')} ({entry.get('effective', '?')})"
    try:
        return StateRule(
            code=entry["code"], name=entry["name"], effective=date.fromisoformat(entry["effective"]),
            scope=entry["scope"],
            weekday=_day_hours(entry["weekday"], f"{where}.weekday"),
            saturday=_day_hours(entry["saturday"], f"{where}.saturday"),
            sunday=_day_hours(entry["sunday"], f"{where}.sunday"),
            standard_time=bool(entry.get("standard_time", False)),
            holiday_ban=_holiday_ban(entry.get("holiday_ban")),
            cap=_cap(entry, where),
            automated_needs_written_consent=bool(entry.get("automated_telemarketing_needs_written_consent", False)),
            source=_source(entry, where))
    except KeyError as missing:
        raise RulePackError(f"{where}: missing field {missing}") from None


def _source(entry: dict[str, Any], where: str) -> str:
    source = entry["source"]
    if not isinstance(source, str) or not source.strip():
        raise RulePackError(f"{where}: source is empty: every entry names the statute or rule it encodes")
    return source


def _cap(entry: dict[str, Any], where: str) -> Cap | None:
    """`cap = {count, window_hours}`; `cap_per_24h = N`, the form of packs stored before caps
    had windows, is read as N in 24 hours so their decisions replay."""
    if entry.get("cap") is not None and entry.get("cap_per_24h") is not None:
        raise RulePackError(f"{where}: give cap or cap_per_24h, not both")
    if entry.get("cap_per_24h") is not None:
        return Cap(_positive(entry["cap_per_24h"], f"{where}.cap_per_24h"), 24)
    value = entry.get("cap")
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"count", "window_hours"}:
        raise RulePackError(f"{where}.cap: expected {{count = N, window_hours = H}}, got {value!r}")
    return Cap(_positive(value["count"], f"{where}.cap.count"),
               _positive(value["window_hours"], f"{where}.cap.window_hours"))


def _positive(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RulePackError(f"{where}: expected a whole number of at least 1, got {value!r}")
    return value


def _check_complete(data: dict[str, Any], states: dict[str, tuple[StateRule, ...]]) -> None:
    """Every required state present, and every entry with a source: a gap must not load."""
    missing = sorted(REQUIRED_STATES - set(states))
    if missing:
        raise RulePackError(f"no [[state]] entry for {', '.join(missing)}: every state, DC and territory "
                            f"of shared/reference/state-rules.csv needs one (the federal rule alone is not "
                            f"what their law says)")
    for code, entry in data.get("statute_holidays", {}).items():
        if "source" not in entry:
            raise RulePackError(f"statute_holidays.{code}: missing field 'source'")
        _source(entry, f"statute_holidays.{code}")


def _zone_overrides(entries: list[dict[str, Any]]) -> tuple[ZoneOverride, ...]:
    found: dict[str, ZoneOverride] = {}
    for index, entry in enumerate(entries):
        where = f"zone_override[{index}] ({entry.get('prefix', '?')})"
        try:
            prefix, zones = entry["prefix"], entry["zones"]
            source = _source(entry, where)
        except KeyError as missing:
            raise RulePackError(f"{where}: missing field {missing}") from None
        if not (isinstance(prefix, str) and prefix.isdigit() and len(prefix) in (3, 6)):
            raise RulePackError(f"{where}.prefix: expected an area code (3 digits) or area code and "
                                f"exchange (6 digits), got {prefix!r}")
        if prefix in found:
            raise RulePackError(f"{where}: prefix {prefix} is overridden twice")
        if not (isinstance(zones, list) and zones):
            raise RulePackError(f"{where}.zones: expected a list of IANA zones, got {zones!r}")
        unknown = [zone for zone in zones if zone not in _available_zones()]
        if unknown:
            raise RulePackError(f"{where}.zones: {', '.join(map(repr, unknown))} is not an IANA time zone")
        found[prefix] = ZoneOverride(prefix, tuple(sorted(set(zones))), source)
    return tuple(found.values())


@lru_cache(maxsize=1)
def _available_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _states(entries: list[dict[str, Any]]) -> dict[str, tuple[StateRule, ...]]:
    by_code: dict[str, list[StateRule]] = {}
    for entry in entries:
        rule = _state(entry)
        by_code.setdefault(rule.code, []).append(rule)
    return {code: tuple(sorted(rules, key=lambda r: r.effective)) for code, rules in by_code.items()}
