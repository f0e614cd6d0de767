"""Issue 12, section 3: zone overrides, Oklahoma's and Maine's rules, caps as data, a pack that
must be complete to load.

Each case is a manual live-voice telemarketing call to a landline with fresh registry data (as in
test_gate_windows), so only zones, windows and caps decide it. Instants are UTC; the comment
gives the local reading the rule is about.
"""
from __future__ import annotations

import copy
import csv
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from consent import gate
from consent.gate import evaluate
from consent.location import library_prefix_facts, resolve_location
from consent.rules import REQUIRED_STATES, Cap, RulePack, RulePackError, load_pack
from consent.scenario import decision_to_dict, iso_utc, parse_scenario
from consent.types import Channel, Facts, PriorAttempt
from outbound.lists.placement import Placer, place
from outbound.models import Campaign, Contact
from outbound.replay import replay_row
from consent.rules import canonical_json
from scheduler.dispatch import attempt_request

PACK = load_pack()
REFERENCE_CSV = Path(__file__).resolve().parents[2] / "shared" / "reference" / "state-rules.csv"

ORLANDO_689 = {"phone": "+16895550123"}
NAVAJO_928 = {"phone": "+19285550123"}          # an exchange phonenumbers places in Phoenix alone
OKLAHOMA = {"phone": "+14055550123"}
MAINE = {"phone": "+12075550123"}
FLORIDA = {"phone": "+13055550123"}


def scenario(contact: dict[str, Any], at: str, history=()) -> dict[str, Any]:
    synced = iso_utc(datetime.fromisoformat(at.replace("Z", "+00:00")) - timedelta(days=1))
    return {"at": at, "channel": "voice", "purpose": "telemarketing", "voice": "live", "automated": False,
            "contact": {"line_type": "landline", **contact},
            "dnc": {"national": {"listed": False, "synced_at": synced}},
            "history": [{"at": when, "channel": channel} for when, channel in history]}


def decide(contact: dict[str, Any], at: str, history=(), pack: RulePack = PACK) -> dict[str, Any]:
    request, facts, when = parse_scenario(scenario(contact, at, history))
    return decision_to_dict(evaluate(request, facts, pack, when))


def pack_data() -> dict[str, Any]:
    return json.loads(PACK.to_json())


def without_overrides() -> RulePack:
    data = pack_data()
    data.pop("zone_override")
    return RulePack(data)


def summary(decision: dict[str, Any]):
    return (decision["verdict"], [reason["rule"] for reason in decision["reasons"]], decision["next_allowed_at"],
            decision["timezones"])


# --- zone overrides ---------------------------------------------------------------------------

@pytest.mark.parametrize("contact,at,expected", [
    # 20:30 EDT: past Florida's 20:00 close (phonenumbers' Central reading made it 19:30 and allowed it)
    (ORLANDO_689, "2026-07-16T00:30:00Z",
     ("defer", ["state.FL.hours"], "2026-07-16T12:00:00Z", ["America/New_York"])),
    # 08:00 EDT: open (in Central time it would be 07:00, before the federal 08:00)
    (ORLANDO_689, "2026-07-15T12:00:00Z", ("allow", [], None, ["America/New_York"])),
    # 20:30 MST in Phoenix is 21:30 MDT on the Navajo Nation: past the federal close; the
    # next opening is 08:00 MST, the later of the two zones' 08:00
    (NAVAJO_928, "2026-07-16T03:30:00Z",
     ("defer", ["federal.hours"], "2026-07-16T15:00:00Z", ["America/Denver", "America/Phoenix"])),
    # In winter both read 20:30 MST: open
    (NAVAJO_928, "2026-01-15T03:30:00Z", ("allow", [], None, ["America/Denver", "America/Phoenix"])),
])
def test_zone_overrides_decide(contact, at, expected):
    assert summary(decide(contact, at)) == expected


def test_phonenumbers_alone_places_these_numbers_wrongly():
    # What the overrides correct (if phonenumbers is fixed, test_zone_table says so).
    assert library_prefix_facts("+1689555")[0] == ("America/Chicago",)
    assert library_prefix_facts("+1928555")[0] == ("America/Phoenix",)


@pytest.mark.parametrize("contact,zones", [
    ({"phone": "+16895550123", "zip": "32501"}, ["America/Chicago", "America/New_York"]),  # a Pensacola ZIP adds Central
    ({"phone": "+16895550123", "zip": "32801"}, ["America/New_York"]),
    ({"phone": "+16895550123", "state": "FL"}, ["America/Chicago", "America/New_York"]),  # every FL zone
    ({"phone": "+19075810123"}, ["America/Adak", "America/Anchorage"]),       # 907-581: not Honolulu
    ({"phone": "+14485550123"}, ["America/Chicago", "America/New_York"]),     # overlay of 850
])
def test_an_override_replaces_the_number_zones_only(contact, zones):
    assert decide(contact, "2026-07-15T17:00:00Z")["timezones"] == zones


def test_every_lookup_applies_the_default_pack_overrides():
    # The scenario path, the list import (both of its paths) and plain resolution agree.
    assert resolve_location("+16895550123").timezones == ("America/New_York",)
    assert place("+16895550123", None, None).timezones == "America/New_York"
    assert Placer().resolve("+16895550123", "", "")[2].timezones == "America/New_York"
    assert place("+19285550123", None, None).timezones == "America/Denver America/Phoenix"


def test_replay_under_a_pack_without_overrides_re_derives_its_own_decision():
    # A decision stored under a pack from before the overrides replays identically: the zones
    # of an overridden prefix are formed under the pack the decision names, not today's.
    old = without_overrides()
    raw = scenario(ORLANDO_689, "2026-07-16T00:30:00Z")
    stored = canonical_json(decide(ORLANDO_689, raw["at"], pack=old))
    assert json.loads(stored)["verdict"] == "allow" and json.loads(stored)["timezones"] == ["America/Chicago"]
    result = replay_row("d1", raw["at"], json.dumps(raw), stored, old.to_json())
    assert result.identical, result.difference
    now = canonical_json(decide(ORLANDO_689, raw["at"]))
    assert replay_row("d2", raw["at"], json.dumps(raw), now, PACK.to_json()).identical
    assert json.loads(now)["verdict"] == "defer"


def test_the_dispatcher_corrects_a_contact_stored_before_the_override():
    # Imported under phonenumbers' zones alone: the request (and so the allow's expiry and the
    # campaign hours worked out from it) gets the corrected zones.
    campaign = Campaign(name="c", channel="voice", voice="live", purpose="telemarketing", automated=False)
    contact = Contact(campaign_id=1, e164="+16895550123", phone_raw="689-555-0123", timezones="America/Chicago",
                      states="FL", line_type="landline")
    request = attempt_request(campaign, contact, PACK)
    assert request.location.timezones == ("America/New_York",)
    assert attempt_request(campaign, contact).location.timezones == ("America/New_York",)
    assert gate.located(request, without_overrides()).location.timezones == ("America/Chicago",)
    untouched = Contact(campaign_id=1, e164="+12125550123", phone_raw="212-555-0123", timezones="America/New_York",
                        states="NY")
    assert attempt_request(campaign, untouched, PACK).location.timezones == ("America/New_York",)


def test_gate_check_command_shows_the_corrected_zones(tmp_path):
    path = tmp_path / "689.json"
    path.write_text(json.dumps(scenario(ORLANDO_689, "2026-07-16T00:30:00Z")))
    result = subprocess.run([sys.executable, "-m", "outbound.cli", "gate", "check", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert summary(decision) == ("defer", ["state.FL.hours"], "2026-07-16T12:00:00Z", ["America/New_York"])
    assert decision["reasons"][0]["detail"] == "Wednesday 20:30 EDT is after 20:00 in FL"


# --- Oklahoma and Maine -----------------------------------------------------------------------

@pytest.mark.parametrize("contact,at,expected", [
    (OKLAHOMA, "2026-07-15T13:30:00Z", ("defer", ["state.OK.hours"], "2026-07-15T14:00:00Z")),   # 08:30 CDT
    (OKLAHOMA, "2026-07-15T14:00:00Z", ("allow", [], None)),                                     # 09:00 CDT
    (OKLAHOMA, "2026-07-16T00:59:00Z", ("allow", [], None)),                                     # 19:59 CDT
    (OKLAHOMA, "2026-07-16T01:00:00Z", ("defer", ["state.OK.hours"], "2026-07-16T14:00:00Z")),   # 20:00 CDT
    (MAINE, "2026-07-15T12:30:00Z", ("defer", ["state.ME.hours"], "2026-07-15T13:00:00Z")),      # Wed 08:30 EDT
    (MAINE, "2026-07-15T13:00:00Z", ("allow", [], None)),                                        # Wed 09:00 EDT
    (MAINE, "2026-07-15T21:00:00Z", ("defer", ["state.ME.hours"], "2026-07-16T13:00:00Z")),      # Wed 17:00 EDT
    (MAINE, "2026-07-17T22:00:00Z", ("defer", ["state.ME.hours"], "2026-07-20T13:00:00Z")),      # Fri 18:00: Monday
    (MAINE, "2026-07-18T15:00:00Z", ("defer", ["state.ME.hours"], "2026-07-20T13:00:00Z")),      # Saturday
    (MAINE, "2026-01-18T15:00:00Z", ("defer", ["state.ME.hours"], "2026-01-19T14:00:00Z")),      # Sunday, EST
])
def test_oklahoma_and_maine_hours(contact, at, expected):
    decision = decide(contact, at)
    assert summary(decision)[:3] == expected


@pytest.mark.parametrize("history,at,expected", [
    # one attempt 7 hours earlier: capped until 8 hours after it
    ([("2026-07-15T06:00:00Z", "sms")], "2026-07-15T13:00:00Z", ("defer", ["state.ME.cap"], "2026-07-15T14:00:00Z")),
    # 8 hours earlier exactly: no longer counted
    ([("2026-07-15T05:00:00Z", "voice")], "2026-07-15T13:00:00Z", ("allow", [], None)),
    # freed at 17:30 EDT, after the close: the next weekday's opening
    ([("2026-07-15T13:30:00Z", "voice")], "2026-07-15T14:00:00Z", ("defer", ["state.ME.cap"], "2026-07-16T13:00:00Z")),
])
def test_maine_allows_one_attempt_in_any_eight_hours(history, at, expected):
    assert summary(decide(MAINE, at, history))[:3] == expected


def test_cap_detail_names_the_cap_from_the_data():
    decision = decide(MAINE, "2026-07-15T13:00:00Z", [("2026-07-15T06:00:00Z", "sms")])
    assert decision["reasons"][0]["detail"] == (
        "1 attempt (voice and SMS together) in the 8 hours before 2026-07-15T13:00:00Z; ME allows 1; "
        "free again at 2026-07-15T14:00:00Z")
    florida = decide(FLORIDA, "2026-07-15T18:00:00Z", [(f"2026-07-15T{hour}:00:00Z", "voice") for hour in (13, 14, 15)])
    assert florida["reasons"][0]["detail"] == (
        "3 attempts (voice and SMS together) in the 24 hours before 2026-07-15T18:00:00Z; FL allows 3; "
        "free again at 2026-07-16T13:00:00Z")


def test_caps_are_data():
    on = datetime(2026, 7, 15).date()
    assert {code: PACK.state_rule(code, on).cap for code in ("FL", "OK", "MD", "ME")} == {
        "FL": Cap(3, 24), "OK": Cap(3, 24), "MD": Cap(3, 24), "ME": Cap(1, 8)}
    # A pack stored before caps had windows still reads (replay): 3 in 24 hours.
    data = pack_data()
    florida = next(entry for entry in data["state"] if entry["code"] == "FL")
    florida.pop("cap")
    florida["cap_per_24h"] = 3
    assert RulePack(data).state_rule("FL", on).cap == Cap(3, 24)


def _reference_free_at(attempts: list[datetime], cap: Cap, at: datetime) -> tuple[bool, datetime | None]:
    """Brute force: capped when `count` attempts fall in (t - window, t]; free at the first
    instant from `at` on when fewer do."""
    def counted(t: datetime) -> int:
        return sum(1 for when in attempts if t - cap.window < when <= t)
    if counted(at) < cap.count:
        return False, None
    candidates = sorted(when + cap.window for when in attempts if when + cap.window > at)
    return True, next(t for t in candidates if counted(t) < cap.count)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=-48 * 60, max_value=0), max_size=8),
       st.sampled_from([Cap(1, 8), Cap(3, 24), Cap(2, 1)]))
def test_check_caps_matches_a_brute_force_count(minutes_before, cap):
    at = datetime(2026, 7, 15, 12, tzinfo=timezone.utc)
    attempts = [at + timedelta(minutes=minutes) for minutes in minutes_before]
    facts = Facts(history=tuple(PriorAttempt(when, Channel.VOICE) for when in attempts))
    reasons, free_at = gate.check_caps(facts, gate.StateFlags(caps=(("ME", cap),), automated_needs_written=False), at)
    capped, expected_free_at = _reference_free_at(attempts, cap, at)
    assert bool(reasons) == capped and free_at == expected_free_at


# --- a pack must be complete ------------------------------------------------------------------

def test_a_pack_without_a_state_does_not_load():
    data = pack_data()
    data["state"] = [entry for entry in data["state"] if entry["code"] not in ("ME", "DC")]
    with pytest.raises(RulePackError, match=r"no \[\[state\]\] entry for DC, ME"):
        RulePack(data)


@pytest.mark.parametrize("where,change,message", [
    ("state", lambda entry: entry.pop("source"), r"state OK \(2022-11-01\): missing field 'source'"),
    ("state", lambda entry: entry.update(source="  "), r"state OK \(2022-11-01\): source is empty"),
    ("zone_override", lambda entry: entry.pop("source"), r"zone_override\[0\] \(689\): missing field 'source'"),
    ("zone_override", lambda entry: entry.update(source=""), r"zone_override\[0\] \(689\): source is empty"),
    ("zone_override", lambda entry: entry.update(zones=["America/Orlando"]), r"'America/Orlando' is not an IANA"),
    ("zone_override", lambda entry: entry.update(prefix="68"), r"zone_override\[0\] \(68\)\.prefix"),
    ("federal", lambda entry: entry.pop("source"), r"federal: missing field 'source'"),
    ("statute_holidays", lambda entry: entry["PA"].pop("source"), r"statute_holidays\.PA: missing field 'source'"),
])
def test_an_entry_without_its_source_or_malformed_does_not_load(where, change, message):
    data = pack_data()
    if where == "state":
        change(next(entry for entry in data["state"] if entry["code"] == "OK"))
    elif where == "zone_override":
        change(next(entry for entry in data["zone_override"] if entry["prefix"] == "689"))
        data["zone_override"].sort(key=lambda entry: entry["prefix"] != "689")
    else:
        change(data[where])
    with pytest.raises(RulePackError, match=message):
        RulePack(data)


@pytest.mark.parametrize("cap,message", [
    ({"count": 0, "window_hours": 8}, r"cap\.count: expected a whole number of at least 1"),
    ({"count": 1}, r"\.cap: expected \{count = N, window_hours = H\}"),
    ({"count": 1, "window_hours": "8"}, r"cap\.window_hours"),
])
def test_a_malformed_cap_does_not_load(cap, message):
    data = pack_data()
    next(entry for entry in data["state"] if entry["code"] == "ME")["cap"] = cap
    with pytest.raises(RulePackError, match=message):
        RulePack(data)


def test_the_pack_names_every_state_of_the_reference_table():
    assert set(PACK.state_codes()) >= REQUIRED_STATES
    if not REFERENCE_CSV.exists():
        pytest.skip("shared/reference/state-rules.csv is not beside this checkout")
    with REFERENCE_CSV.open(newline="") as handle:
        assert {row["code"] for row in csv.DictReader(handle)} == REQUIRED_STATES


def test_the_pack_follows_the_reference_table_hours():
    # Today's entry of every state matches the amended state-rules.csv row by row.
    if not REFERENCE_CSV.exists():
        pytest.skip("shared/reference/state-rules.csv is not beside this checkout")
    on = datetime(2026, 7, 15).date()

    def hours(rule_hours) -> list[str] | str:
        if rule_hours is None:
            return "closed"
        return [f"{rule_hours.start // 60:02d}:{rule_hours.start % 60:02d}",
                f"{rule_hours.end // 60:02d}:{rule_hours.end % 60:02d}"]

    with REFERENCE_CSV.open(newline="") as handle:
        for row in csv.DictReader(handle):
            rule = PACK.state_rule(row["code"], on)
            for day, prefix in ((0, "weekday"), (5, "saturday"), (6, "sunday")):
                start = row[f"{prefix}_start"]
                expected = "closed" if start == "closed" else [start, row[f"{prefix}_end"]]
                assert hours(rule.hours_on(day)) == expected, (row["code"], prefix)
            if row["max_calls_per_24h"]:
                assert rule.cap == Cap(int(row["max_calls_per_24h"]), 24), row["code"]
            assert rule.source == row["source"], row["code"]


def test_a_deep_copy_of_the_pack_loads_to_the_same_version():
    assert RulePack(copy.deepcopy(pack_data())).version == PACK.version
