"""Properties of the gate over random contacts, instants, purposes and channels.

(a) An allow is never outside 08:00-21:00 local in any candidate zone, nor inside any candidate
    state's hours, closed days or holidays.
(b) A defer for a window, holiday or cap names an instant at or after `at` when none of those
    hold any more, and it is the earliest such instant.
(c) The same inputs give the same bytes, also under a rule pack rebuilt from its JSON.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import phonenumbers
from hypothesis import HealthCheck, event, given, settings, strategies as st
from phonenumbers import timezone as number_timezones

from consent.gate import DEFERRING, evaluate
from consent.holiday_calendar import holiday_name, holidays_for_year
from consent.rules import RulePack, load_pack
from consent.scenario import decision_json, decision_to_dict, iso_utc, parse_scenario

PACK = load_pack()
FRESH_PACK = RulePack.from_json(PACK.to_json())
PROPERTY = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# Real area codes: single-zone ones from states with their own rules, plus every multi-zone one.
AREA_CODES = [
    "212", "213", "305", "850", "312", "404", "512", "915", "601", "617", "702", "801", "808", "206",
    "401", "215", "412", "405", "410", "860", "505", "225", "205", "423", "303", "602", "503",
    "208", "986", "775", "605", "701", "907", "928",           # multi-zone
    "787", "340", "671",                                       # PR, USVI, Guam
    "801", "435", "215", "412", "401", "205", "225",           # holiday-ban states, weighted up
]
STATES = ["NY", "FL", "UT", "RI", "PA", "TX", "MS", "SD", "ND", "AK", "HI", "CT", "OK", "MD", "NV",
          "ID", "CA", "LA", "AL", "WA", "NM", "AZ", "PR", "GU"]
ZIPS = ["10001", "84101", "33101", "32501", "99501", "96813", "02903", "19103", "75201", "79901",
        "39201", "57104", "58501", "83702", "89501", "73102", "21201", "06103", "90012", "86001",
        "00901", "99999"]                                    # 99999: no such ZIP
START = datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp()
END = datetime(2029, 1, 1, tzinfo=timezone.utc).timestamp()
FULL_CONSENT = {"kind": "written", "channels": ["voice", "sms"], "purposes": ["telemarketing", "informational"],
                "granted_at": "2020-01-01T00:00:00Z"}


def _valid(phone: str) -> bool:
    return phonenumbers.is_valid_number(phonenumbers.parse(phone))


phones = st.builds(lambda npa, nxx, line: f"+1{npa}{nxx}{line:04d}",
                   st.sampled_from(AREA_CODES), st.integers(200, 999).map(str),
                   st.integers(0, 9999)).filter(_valid)
# Days some candidate state bans (and the days around them), 2024-2028.
HOLIDAYS = sorted({day for year in range(2024, 2029) for code in ("PA", "UT", "RI", "AL", "LA")
                   for day in holidays_for_year(PACK, PACK.state_rule(code, date(year, 6, 1)), year)})
# Minutes, with a bias to the quarter hours where windows open and close, and to holidays.
instants = st.one_of(
    st.integers(int(START) // 60, int(END) // 60).map(lambda m: m * 60),
    st.integers(int(START) // 900, int(END) // 900).map(lambda q: q * 900),
    st.builds(lambda day, shift, minute: datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()
              + shift * 86400 + minute * 60,
              st.sampled_from(HOLIDAYS), st.integers(-1, 1), st.integers(0, 24 * 60 - 1)),
).map(lambda ts: datetime.fromtimestamp(ts, timezone.utc))


@st.composite
def scenarios(draw):
    at = draw(instants)
    channel = draw(st.sampled_from(["voice", "sms"]))
    contact = {"phone": draw(phones), "line_type": draw(st.sampled_from(["mobile", "landline", "voip", "unknown"]))}
    state, zip_code = draw(st.none() | st.sampled_from(STATES)), draw(st.none() | st.sampled_from(ZIPS))
    if state:
        contact["state"] = state
    if zip_code:
        contact["zip"] = zip_code
    history = [{"at": iso_utc(at - timedelta(minutes=minutes)), "channel": draw(st.sampled_from(["voice", "sms"]))}
               for minutes in draw(st.lists(st.integers(1, 30 * 60), max_size=5))]
    return {
        "at": iso_utc(at),
        "channel": channel,
        "purpose": draw(st.sampled_from(["telemarketing", "informational"])),
        "voice": draw(st.sampled_from(["live", "prerecorded", "artificial"])) if channel == "voice" else None,
        "automated": draw(st.booleans()),
        "contact": contact,
        # Mostly a consent that covers everything, so that windows, holidays and caps decide.
        "consents": draw(st.sampled_from([[FULL_CONSENT], [FULL_CONSENT], [FULL_CONSENT], []])),
        "dnc": {"national": {"listed": False, "synced_at": iso_utc(at - timedelta(days=1))}},
        "history": history,
    }


def decide(raw, pack=PACK):
    request, facts, at = parse_scenario(raw)
    return evaluate(request, facts, pack, at)


def at_instant(raw, when: datetime):
    moved = dict(raw, at=iso_utc(when))
    moved["dnc"] = {"national": {"listed": False, "synced_at": iso_utc(when - timedelta(days=1))}}
    return decide(moved)


def _seconds(local: datetime) -> int:
    return local.hour * 3600 + local.minute * 60 + local.second


def _standard_seconds(at: datetime, zone: ZoneInfo) -> int:
    local = at.astimezone(zone)
    standard = at + local.utcoffset() - (local.dst() or timedelta(0))
    return _seconds(standard.replace(tzinfo=None))


# --- (a) an allow is inside every window ---------------------------------------------------------

@PROPERTY
@given(scenarios())
def test_allow_is_inside_every_window_of_every_candidate_zone_and_state(raw):
    decision = decide(raw)
    event(f"verdict: {decision.verdict.value}")
    if decision.verdict.value != "allow":
        return
    at = datetime.fromisoformat(raw["at"].replace("Z", "+00:00"))
    number_zones = {z for z in number_timezones.time_zones_for_number(phonenumbers.parse(raw["contact"]["phone"]))
                    if z != "Etc/Unknown"}
    if len(number_zones) < 10:                 # not the NANP-wide fallback list
        assert number_zones <= set(decision.timezones)
    for zone_name in decision.timezones:
        zone = ZoneInfo(zone_name)
        local = at.astimezone(zone)
        assert 8 * 3600 <= _seconds(local) < 21 * 3600, (zone_name, local.isoformat())
        for code in decision.states:
            rule = PACK.state_rule(code, local.date())
            if rule is None:
                continue
            hours = rule.hours_on(local.weekday())
            assert hours is not None, (code, "closed day", local.isoformat())
            assert holiday_name(PACK, rule, local.date()) is None, (code, "holiday", local.isoformat())
            assert hours.start * 60 <= _seconds(local) < hours.end * 60, (code, local.isoformat())
            if rule.standard_time:
                assert hours.start * 60 <= _standard_seconds(at, zone) < hours.end * 60, (code, local.isoformat())


# --- (b) next_allowed_at is the earliest instant no window, holiday or cap holds -----------------

@PROPERTY
@given(scenarios())
def test_next_allowed_at_clears_every_deferring_reason_and_is_the_earliest(raw):
    decision = decide(raw)
    codes = {reason.code for reason in decision.reasons}
    event(f"verdict: {decision.verdict.value}, {sorted(codes & DEFERRING)}")
    if decision.verdict.value != "defer":
        return
    assert codes & DEFERRING
    at = datetime.fromisoformat(raw["at"].replace("Z", "+00:00"))
    next_at = decision.next_allowed_at
    if next_at is None:
        # Some candidate sets never open (Rhode Island's 09-18 applied in both New York and
        # Guam time leaves no common hour): then no instant of the next two weeks may be free.
        _assert_never_free(raw, at)
        return
    assert next_at > at
    later = at_instant(raw, next_at)
    assert not {reason.code for reason in later.reasons} & DEFERRING, (iso_utc(next_at), later)
    # One second earlier something still defers: nothing earlier was skipped.
    earlier = at_instant(raw, next_at - timedelta(seconds=1))
    if next_at - timedelta(seconds=1) >= at:
        assert {reason.code for reason in earlier.reasons} & DEFERRING, (iso_utc(next_at), earlier)


def _assert_never_free(raw, at: datetime) -> None:
    for quarter in range(14 * 24 * 4):
        later = at_instant(raw, at + timedelta(minutes=15 * quarter))
        assert {reason.code for reason in later.reasons} & DEFERRING, iso_utc(at + timedelta(minutes=15 * quarter))


# --- (c) determinism -------------------------------------------------------------------------------

def test_rebuilt_pack_has_the_same_version_and_data():
    assert FRESH_PACK is not PACK
    assert FRESH_PACK.version == PACK.version
    assert FRESH_PACK.to_json() == PACK.to_json()


@PROPERTY
@given(scenarios())
def test_same_inputs_same_bytes_across_pack_instances(raw):
    first = decision_json(decide(raw))
    second = decision_json(decide(raw))
    rebuilt = decision_json(decide(raw, FRESH_PACK))
    assert first == second == rebuilt
    assert decision_to_dict(decide(raw, FRESH_PACK))["rules_version"] == PACK.version
