"""The gate's memos never change an answer.

The gate keeps derived values per rule pack (windows per zone and local date, reasons per UTC
minute, state flags, allowed spans, allow decisions). Each is a pure function of its key, so a
decision must be byte for byte the same whatever the pack has seen before.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from phonenumbers.tzdata import TIMEZONE_DATA

from consent import gate, rules as rules_module, windows
from consent.gate import evaluate
from consent.location import known_states, zones_for_state
from consent.rules import Cap, RulePack, load_pack
from consent.scenario import decision_json, iso_utc, parse_scenario
from consent.types import Location

PACK = load_pack()


def fresh_pack() -> RulePack:
    return RulePack.from_json(PACK.to_json())


def automated_call(phone: str, at: str) -> dict:
    return {"at": at, "channel": "voice", "purpose": "telemarketing", "voice": "live", "automated": True,
            "contact": {"phone": phone, "line_type": "landline"},
            "consents": [{"kind": "written", "channels": ["voice"], "purposes": ["telemarketing"],
                          "granted_at": "2020-01-01T00:00:00Z"}],
            "dnc": {"national": {"listed": False, "synced_at": at[:8] + "01T00:00:00Z"}}}


def decision_bytes(raw: dict, pack: RulePack) -> str:
    request, facts, at = parse_scenario(raw)
    return decision_json(evaluate(request, facts, pack, at))


@pytest.mark.parametrize("phone,earlier,later,expected", [
    # Same rule, same local HH:MM, another date: the detail names the later date's own holiday
    # date and weekday, not the one decided first.
    ("+18015550123", "2026-01-01T18:00:00Z", "2027-01-01T18:00:00Z", "2027-01-01 is New Year's Day"),
    ("+16055550123", "2026-07-18T18:00:00Z", "2026-07-19T18:00:00Z", "Sunday 12:00 MDT: no calls on Sundays"),
])
def test_a_defer_reason_does_not_depend_on_what_was_decided_before(phone, earlier, later, expected):
    alone = decision_bytes(automated_call(phone, later), fresh_pack())
    pack = fresh_pack()
    decision_bytes(automated_call(phone, earlier), pack)
    assert decision_bytes(automated_call(phone, later), pack) == alone
    assert expected in alone


# --- memos against a fresh pack and against the rules read directly ----------------------------

MEMO = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
# Every zone a number or an address can place a contact in.
ZONES = sorted({zone for zone in TIMEZONE_DATA["1"] if zone != "Etc/Unknown"}
               | {zone for state in known_states() for zone in zones_for_state(state)})
STATES = sorted(PACK.state_codes())
AREA_CODES = ["212", "305", "850", "208", "775", "605", "701", "907", "928", "808", "401", "215", "801",
              "405", "410", "601", "512", "915", "787", "340", "671", "416", "709", "902", "867", "441"]


def _dst_switch_days(year: int) -> list[datetime]:
    # The US switch Sundays under both the pre-2007 and the current rule, and Europe-style last
    # Sundays (some zones here followed other rules in their history).
    days = []
    for month in (3, 4, 10, 11):
        first = date(year, month, 1)
        sundays = [first + timedelta(days=(6 - first.weekday()) % 7 + 7 * week) for week in range(4)]
        days.extend(datetime(d.year, d.month, d.day, tzinfo=timezone.utc) for d in sundays)
    return days


# Minutes around DST switches (quarter hours too: windows open and close on them, and a zone
# like St John's, UTC-3:30, puts a local hour on a UTC half hour), any minute of 2026, any second.
instants = st.one_of(
    st.builds(lambda year, index, minutes: _dst_switch_days(year)[index] + timedelta(minutes=minutes),
              st.integers(1960, 2100), st.integers(0, 15), st.integers(-12 * 60, 36 * 60)),
    st.builds(lambda year, index, quarters: _dst_switch_days(year)[index] + timedelta(minutes=15 * quarters),
              st.integers(1960, 2100), st.integers(0, 15), st.integers(-48, 4 * 36)),
    st.builds(lambda minutes: datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=minutes),
              st.integers(0, 366 * 24 * 60)),
    st.builds(lambda seconds: datetime(1965, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=seconds),
              st.integers(0, 140 * 365 * 86400)),
)


@st.composite
def scenarios(draw):
    at = draw(instants)
    contact = {"phone": f"+1{draw(st.sampled_from(AREA_CODES))}{draw(st.integers(200, 999))}"
                        f"{draw(st.integers(0, 9999)):04d}",
               "line_type": draw(st.sampled_from(["mobile", "landline", "unknown"]))}
    state = draw(st.none() | st.sampled_from(STATES))
    if state:
        contact["state"] = state
    history = [{"at": iso_utc(at - timedelta(minutes=minutes)), "channel": "voice"}
               for minutes in draw(st.lists(st.integers(1, 30 * 60), max_size=4))]
    channel = draw(st.sampled_from(["voice", "sms"]))
    return {"at": iso_utc(at), "channel": channel, "purpose": draw(st.sampled_from(["telemarketing", "informational"])),
            "voice": "artificial" if channel == "voice" else None, "automated": draw(st.booleans()),
            "contact": contact,
            "consents": [{"kind": "written", "channels": ["voice", "sms"], "purposes": ["telemarketing", "informational"],
                          "granted_at": "1950-01-01T00:00:00Z"}],
            "dnc": {"national": {"listed": False, "synced_at": iso_utc(at - timedelta(days=1))}},
            "history": history}


def _neighbours(raw: dict) -> list[dict]:
    # Warm the memos with what a busy pack has seen: the same contact a minute, an hour, a day
    # and a week around, so every memo the decision reads was filled by another decision.
    at = datetime.fromisoformat(raw["at"].replace("Z", "+00:00"))
    shifts = [timedelta(minutes=-1), timedelta(minutes=1), timedelta(hours=-1), timedelta(hours=3),
              timedelta(days=-1), timedelta(days=1), timedelta(days=-7), timedelta(days=7)]
    return [dict(raw, at=iso_utc(at + shift)) for shift in shifts]


@MEMO
@given(scenarios())
def test_a_warm_pack_decides_as_a_fresh_one(raw):
    for other in _neighbours(raw):
        decision_bytes(other, PACK)
    assert decision_bytes(raw, PACK) == decision_bytes(raw, fresh_pack())


@MEMO
@given(st.lists(scenarios(), min_size=2, max_size=6))
def test_memos_starting_afresh_at_every_entry_change_no_answer(raws):
    expected = [decision_bytes(raw, fresh_pack()) for raw in raws]
    tiny = fresh_pack()
    with mock.patch.object(gate, "PLACE_LIMIT", 1), mock.patch.object(gate, "PLACE_ENTRIES_LIMIT", 1), \
            mock.patch.object(rules_module, "CACHE_LIMIT", 2), mock.patch.object(rules_module, "BLOCK_CACHE_LIMIT", 1), \
            mock.patch.object(gate, "PLACE_BLOCKS_LIMIT", 1):
        for _ in range(2):
            assert [decision_bytes(raw, tiny) for raw in raws] == expected
    assert len(tiny.places) <= 1 and len(tiny.cache) <= 2 and len(tiny.block_cache) <= 1


def _reference_facts(pack: RulePack, zones: tuple[str, ...], states: tuple[str, ...], ts: float):
    """(caps, automated_needs_written, open) read straight from the rules, nothing kept."""
    days = [datetime.fromtimestamp(ts, ZoneInfo(zone)).date() for zone in zones]
    flag_days = sorted(set(days)) or [datetime.fromtimestamp(ts, timezone.utc).date()]
    in_force = [rule for code in states for day in flag_days if (rule := pack.state_rule(code, day))]
    caps = tuple(sorted({rule.code: rule.cap for rule in in_force if rule.cap}.items()))
    open_now = all(_inside(pack, zone, states, day, ts) for zone, day in zip(zones, days))
    return caps, any(rule.automated_needs_written_consent for rule in in_force), open_now


def _inside(pack: RulePack, zone: str, states: tuple[str, ...], day: date, ts: float) -> bool:
    return any(start <= ts < end for start, end in _reference_windows(pack, zone, states, day, 1))


@MEMO
@example(("America/St_Johns",), (), datetime(2026, 7, 15, 10, 30, tzinfo=timezone.utc))    # 08:00 NDT opens
@example(("America/St_Johns",), (), datetime(2026, 11, 1, 23, 30, tzinfo=timezone.utc))    # 20:00 NST, DST just ended
@example(("America/Chicago", "America/New_York"), ("FL",), datetime(2026, 3, 8, 13, 0, tzinfo=timezone.utc))
@example(("Pacific/Guam",), ("RI",), datetime(2026, 12, 31, 23, 0, tzinfo=timezone.utc))
# MD's latest entry takes effect on 2024-01-01 local: before, on and after the UTC day that
# follows it, with a zone ahead of UTC and one far behind it.
@example(("America/New_York", "Pacific/Honolulu"), ("MD",), datetime(2024, 1, 1, 8, 0, tzinfo=timezone.utc))
@example(("America/New_York", "Pacific/Honolulu"), ("MD",), datetime(2024, 1, 1, 23, 59, tzinfo=timezone.utc))
@example(("Pacific/Guam",), ("CT", "MD"), datetime(2023, 12, 31, 15, 0, tzinfo=timezone.utc))
@example(("America/New_York",), ("MD",), datetime(2024, 1, 2, 0, 0, tzinfo=timezone.utc))
@given(st.lists(st.sampled_from(ZONES), max_size=3, unique=True).map(lambda zones: tuple(sorted(zones))),
       st.lists(st.sampled_from(STATES), max_size=2, unique=True).map(lambda states: tuple(sorted(states))),
       instants)
def test_place_facts_match_the_rules_read_directly(zones, states, at):
    place = gate.place_of(PACK, Location(e164="+12125550123", timezones=zones, states=states))
    ts = at.timestamp()
    for shift in (-86400, -60, 0):     # fill the minute and day memos first, then read them
        gate.place_facts(PACK, place, ts + shift)
    flags, open_now = gate.place_facts(PACK, place, ts)
    assert (flags.caps, flags.automated_needs_written, open_now) == _reference_facts(PACK, zones, states, ts)


def test_flags_while_a_new_entry_is_in_force_in_one_zone_only():
    # A later FL entry without a cap: on its first UTC morning New York is on the new date and
    # Honolulu still on the old one, so the old entry's cap still counts (entries take effect on
    # local dates); from the next UTC midnight on, only the new entry is in force anywhere.
    data = json.loads(PACK.to_json())
    florida = next(entry for entry in data["state"] if entry["code"] == "FL")
    data["state"].append(dict(florida, effective="2030-01-01", cap=None,
                              automated_telemarketing_needs_written_consent=False))
    pack = RulePack(data)
    place = gate.place_of(pack, Location(e164="+13055550123", timezones=("America/New_York", "Pacific/Honolulu"),
                                         states=("FL",)))
    straddling = datetime(2030, 1, 1, 8, tzinfo=timezone.utc).timestamp()
    flags, _ = gate.place_facts(pack, place, straddling)
    assert flags.caps == (("FL", Cap(count=3, window_hours=24)),) and flags.automated_needs_written
    flags, _ = gate.place_facts(pack, place, straddling + 16 * 3600)
    assert flags.caps == () and not flags.automated_needs_written


# --- allowed spans, derived a block of days at a time, against the rules read day by day --------

def _reference_windows(pack: RulePack, zone: str, states: tuple[str, ...], first: date, days: int) -> list[tuple[float, float]]:
    """One zone's window on each local date from `first`: every rule's constraint at once."""
    found = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        constraints = [*windows._compute_rule_constraints(pack, zone, None, day)]
        for code in states:
            constraints.extend(windows._compute_rule_constraints(pack, zone, code, day))
        if all(c.start is not None for c in constraints):
            start, end = max(c.start for c in constraints), min(c.end for c in constraints)
            if start < end:
                found.append((start, end))
    return found


def _reference_next_allowed(pack: RulePack, zones: tuple[str, ...], states: tuple[str, ...], ts: float) -> float | None:
    """The earliest instant at or after `ts` inside a window of every zone, within SEARCH_DAYS
    UTC days: `ts` itself or some window's opening, whichever comes first and is in them all."""
    first = datetime.fromtimestamp(ts, timezone.utc).date() - timedelta(days=1)
    limit = (ts // 86400 + windows.SEARCH_DAYS) * 86400
    per_zone = [_reference_windows(pack, zone, states, first, windows.SEARCH_DAYS + 2) for zone in zones]
    candidates = sorted({ts, *(start for spans in per_zone for start, _ in spans if ts < start < limit)})
    for candidate in candidates:
        if all(any(start <= candidate < end for start, end in spans) for spans in per_zone):
            return candidate
    return None


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@example(("America/New_York", "Pacific/Guam"), ("RI",), datetime(2026, 7, 15, 16, tzinfo=timezone.utc))  # never opens
@example(("America/Adak", "America/Anchorage"), (), datetime(2026, 2, 1, 5, 0, tzinfo=timezone.utc) - timedelta(seconds=1))
@example(("America/Denver",), ("UT",), datetime(2026, 7, 23, 23, tzinfo=timezone.utc))   # Pioneer Day ends a block
@given(st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True).map(lambda zones: tuple(sorted(zones))),
       st.lists(st.sampled_from(STATES), max_size=2, unique=True).map(lambda states: tuple(sorted(states))),
       instants)
def test_next_allowed_matches_the_rules_read_day_by_day(zones, states, at):
    ts = at.timestamp()
    expected = _reference_next_allowed(PACK, zones, states, ts)
    assert windows.next_allowed(fresh_pack(), zones, states, ts) == expected
    place = gate.place_of(PACK, Location(e164="+12125550123", timezones=zones, states=states))
    assert gate._next_opening(PACK, place, ts) == expected


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True).map(lambda zones: tuple(sorted(zones))),
       st.lists(st.sampled_from(STATES), max_size=2, unique=True).map(lambda states: tuple(sorted(states))),
       instants)
def test_one_days_allowed_spans_are_the_windows_clipped_to_it(zones, states, at):
    utc_day = int(at.timestamp() // 86400)
    day_start, day_end = utc_day * 86400, (utc_day + 1) * 86400
    spans = windows.allowed_spans(PACK, zones, states, utc_day)
    assert all(day_start <= start < end <= day_end for start, end in spans)
    assert list(spans) == sorted(spans)
    # Every span's edges, and an instant inside each, agree with the rules read directly.
    first = datetime.fromtimestamp(day_start, timezone.utc).date() - timedelta(days=1)
    per_zone = [_reference_windows(PACK, zone, states, first, 3) for zone in zones]
    inside = lambda ts: all(any(s <= ts < e for s, e in spans_) for spans_ in per_zone)
    for start, end in spans:
        assert inside(start) and inside((start + end) / 2) and inside(end - 1e-3)
    gaps = [(day_start, spans[0][0] if spans else day_end)] + [
        (spans[i][1], spans[i + 1][0]) for i in range(len(spans) - 1)] + ([(spans[-1][1], day_end)] if spans else [])
    for low, high in gaps:
        if low < high:
            assert not inside(low) and not inside((low + high) / 2)


# --- parsed instants ---------------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["2026-07-15T16:00:00Z", "2026-07-15T16:00:00+00:00"])
def test_a_utc_instant_is_parsed_under_the_standard_library_utc(spelling):
    raw = dict(automated_call("+13055550123", "2026-07-15T16:00:00Z"), at=spelling)
    raw["history"] = [{"at": spelling, "channel": "sms"}]
    request, facts, at = parse_scenario(raw)
    assert at.tzinfo is timezone.utc and at == datetime(2026, 7, 15, 16, tzinfo=timezone.utc)
    assert facts.history[0].at.tzinfo is timezone.utc
    assert facts.consents[0].granted_at.tzinfo is timezone.utc


def test_another_offset_keeps_its_wall_time():
    # EBR months are counted on the given wall time: an offset other than zero stays as given.
    raw = automated_call("+13055550123", "2026-07-15T16:00:00Z")
    raw["ebr"] = {"last_transaction_at": "2026-03-31T01:00:00+05:00"}
    _request, facts, _at = parse_scenario(raw)
    assert facts.last_transaction_at.isoformat() == "2026-03-31T01:00:00+05:00"
