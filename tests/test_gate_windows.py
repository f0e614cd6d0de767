"""Calling windows, holidays and caps in local time (DESIGN.md, "The gate contract", Windows).

Each case is a manual live-voice telemarketing call to a landline with fresh registry data, so
only the window, holiday and cap rules can defer it. Instants are UTC; the comment gives the local
reading that the rule is about.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from consent.gate import evaluate
from consent.rules import load_pack
from consent.scenario import decision_to_dict, iso_utc, parse_scenario

NEW_YORK = {"phone": "+12125550123", "zip": "10001"}
LOS_ANGELES = {"phone": "+12135550123", "zip": "90012"}
IDAHO_208 = {"phone": "+12085550123"}            # Boise (Mountain) and Los Angeles (Pacific)
NEVADA_775 = {"phone": "+17755550123"}           # Boise and Los Angeles; NV 09-21
SOUTH_DAKOTA_605 = {"phone": "+16055550123"}     # Denver and North_Dakota/Center; SD 09-21 weekdays
NORTH_DAKOTA_701 = {"phone": "+17015550123"}     # Denver and North_Dakota/Center
ALASKA_907 = {"phone": "+19075550123"}           # Adak (UTC-10/-9) and Anchorage (UTC-9/-8)
FLORIDA = {"phone": "+13055550123"}
FLORIDA_NUMBER_UTAH_ADDRESS = {"phone": "+13055550123", "zip": "84101"}
FLORIDA_NUMBER_UTAH_STATE = {"phone": "+13055550123", "zip": "84101", "state": "UT"}
OKLAHOMA = {"phone": "+14055550123"}
MARYLAND = {"phone": "+14105550123"}
TEXAS = {"phone": "+15125550123", "zip": "78701"}
UTAH = {"phone": "+18015550123"}
RHODE_ISLAND = {"phone": "+14015550123"}
PENNSYLVANIA = {"phone": "+12155550123"}
MISSISSIPPI = {"phone": "+16015550123"}
CONNECTICUT = {"phone": "+18605550123"}


def _parse(instant: str) -> datetime:
    return datetime.fromisoformat(instant.replace("Z", "+00:00"))


def scenario(contact: dict[str, Any], at: str, history=(), **overrides: Any) -> dict[str, Any]:
    synced = iso_utc(_parse(at) - timedelta(days=1))
    result = {
        "at": at, "channel": "voice", "purpose": "telemarketing", "voice": "live", "automated": False,
        "contact": {"line_type": "landline", **contact},
        "dnc": {"national": {"listed": False, "synced_at": synced}},
        "history": [{"at": when, "channel": channel} for when, channel in history],
    }
    result.update(overrides)
    return result


def decide(contact: dict[str, Any], at: str, history=(), **overrides: Any) -> dict[str, Any]:
    request, facts, when = parse_scenario(scenario(contact, at, history, **overrides))
    return decision_to_dict(evaluate(request, facts, load_pack(), when))


def check(decision, verdict, expected_rules, next_at):
    """Verdict, the rules behind the deferring reasons, and next_allowed_at."""
    assert decision["verdict"] == verdict, decision
    assert {r["rule"] for r in decision["reasons"]} == set(expected_rules), decision
    for reason in decision["reasons"]:
        kind = reason["rule"].rsplit(".", 1)[1]
        expected_code = {"hours": "calling_window", "holidays": "holiday", "cap": "frequency_cap"}[kind]
        assert reason["code"] == expected_code, reason
    assert decision["next_allowed_at"] == next_at, decision


WINDOW = ["federal.hours"]


# --- DST transition days ------------------------------------------------------------------------

@pytest.mark.parametrize("contact,at,verdict,rules,next_at", [
    # 2026-03-08, spring forward, New York (EDT = UTC-4 from 02:00 local)
    (NEW_YORK, "2026-03-08T02:00:00Z", "defer", WINDOW, "2026-03-08T12:00:00Z"),   # Sat 21:00 EST -> Sun 08:00 EDT
    (NEW_YORK, "2026-03-08T11:59:00Z", "defer", WINDOW, "2026-03-08T12:00:00Z"),   # 07:59 EDT
    (NEW_YORK, "2026-03-08T12:00:00Z", "allow", [], None),                         # 08:00 EDT
    (NEW_YORK, "2026-03-09T00:59:00Z", "allow", [], None),                         # 20:59 EDT
    (NEW_YORK, "2026-03-09T01:00:00Z", "defer", WINDOW, "2026-03-09T12:00:00Z"),   # 21:00 EDT
    # 2026-11-01, fall back, New York (EST = UTC-5 from 02:00 local)
    (NEW_YORK, "2026-11-01T01:00:00Z", "defer", WINDOW, "2026-11-01T13:00:00Z"),   # Sat 21:00 EDT -> Sun 08:00 EST
    (NEW_YORK, "2026-11-01T12:59:00Z", "defer", WINDOW, "2026-11-01T13:00:00Z"),   # 07:59 EST
    (NEW_YORK, "2026-11-01T13:00:00Z", "allow", [], None),                         # 08:00 EST
    (NEW_YORK, "2026-11-02T01:59:00Z", "allow", [], None),                         # 20:59 EST
    (NEW_YORK, "2026-11-02T02:00:00Z", "defer", WINDOW, "2026-11-02T13:00:00Z"),   # 21:00 EST
    # 2026-03-08, Los Angeles (PDT = UTC-7)
    (LOS_ANGELES, "2026-03-08T05:00:00Z", "defer", WINDOW, "2026-03-08T15:00:00Z"),  # Sat 21:00 PST
    (LOS_ANGELES, "2026-03-08T14:59:00Z", "defer", WINDOW, "2026-03-08T15:00:00Z"),  # 07:59 PDT
    (LOS_ANGELES, "2026-03-08T15:00:00Z", "allow", [], None),                        # 08:00 PDT
    (LOS_ANGELES, "2026-03-09T03:59:00Z", "allow", [], None),                        # 20:59 PDT
    (LOS_ANGELES, "2026-03-09T04:00:00Z", "defer", WINDOW, "2026-03-09T15:00:00Z"),  # 21:00 PDT
    # 2026-11-01, Los Angeles (PST = UTC-8)
    (LOS_ANGELES, "2026-11-01T04:00:00Z", "defer", WINDOW, "2026-11-01T16:00:00Z"),  # Sat 21:00 PDT
    (LOS_ANGELES, "2026-11-01T15:59:00Z", "defer", WINDOW, "2026-11-01T16:00:00Z"),  # 07:59 PST
    (LOS_ANGELES, "2026-11-01T16:00:00Z", "allow", [], None),                        # 08:00 PST
    (LOS_ANGELES, "2026-11-02T04:59:00Z", "allow", [], None),                        # 20:59 PST
    (LOS_ANGELES, "2026-11-02T05:00:00Z", "defer", WINDOW, "2026-11-02T16:00:00Z"),  # 21:00 PST
])
def test_dst_transition_days(contact, at, verdict, rules, next_at):
    check(decide(contact, at), verdict, rules, next_at)


# --- multi-zone numbers -------------------------------------------------------------------------

@pytest.mark.parametrize("contact,zones,at,verdict,rules,next_at", [
    # 208: 08:00 must have come in Pacific, 21:00 not yet in Mountain
    (IDAHO_208, ["America/Boise", "America/Los_Angeles"], "2026-07-15T14:30:00Z", "defer", WINDOW, "2026-07-15T15:00:00Z"),
    (IDAHO_208, ["America/Boise", "America/Los_Angeles"], "2026-07-15T15:00:00Z", "allow", [], None),
    (IDAHO_208, ["America/Boise", "America/Los_Angeles"], "2026-07-16T02:59:00Z", "allow", [], None),
    (IDAHO_208, ["America/Boise", "America/Los_Angeles"], "2026-07-16T03:00:00Z", "defer", WINDOW, "2026-07-16T15:00:00Z"),
    # 775: Nevada's 09:00 in Pacific, the federal 21:00 in Mountain
    (NEVADA_775, ["America/Boise", "America/Los_Angeles"], "2026-07-15T15:30:00Z", "defer", ["state.NV.hours"], "2026-07-15T16:00:00Z"),
    (NEVADA_775, ["America/Boise", "America/Los_Angeles"], "2026-07-15T16:00:00Z", "allow", [], None),
    (NEVADA_775, ["America/Boise", "America/Los_Angeles"], "2026-07-16T03:00:00Z", "defer", ["federal.hours", "state.NV.hours"], "2026-07-16T16:00:00Z"),
    # 605: SD's 09:00 in Mountain; no Saturday
    (SOUTH_DAKOTA_605, ["America/Denver", "America/North_Dakota/Center"], "2026-07-15T14:30:00Z", "defer", ["state.SD.hours"], "2026-07-15T15:00:00Z"),
    (SOUTH_DAKOTA_605, ["America/Denver", "America/North_Dakota/Center"], "2026-07-16T01:59:00Z", "allow", [], None),
    (SOUTH_DAKOTA_605, ["America/Denver", "America/North_Dakota/Center"], "2026-07-16T02:00:00Z", "defer", ["state.SD.hours", "federal.hours"], "2026-07-16T15:00:00Z"),
    (SOUTH_DAKOTA_605, ["America/Denver", "America/North_Dakota/Center"], "2026-07-18T18:00:00Z", "defer", ["state.SD.hours"], "2026-07-20T15:00:00Z"),
    # 701: 08:00 Mountain to 21:00 Central
    (NORTH_DAKOTA_701, ["America/Denver", "America/North_Dakota/Center"], "2026-07-15T13:30:00Z", "defer", WINDOW, "2026-07-15T14:00:00Z"),
    (NORTH_DAKOTA_701, ["America/Denver", "America/North_Dakota/Center"], "2026-07-16T01:59:00Z", "allow", [], None),
    (NORTH_DAKOTA_701, ["America/Denver", "America/North_Dakota/Center"], "2026-07-16T02:00:00Z", "defer", WINDOW, "2026-07-16T14:00:00Z"),
    # 907: 08:00 on Adak to 21:00 in Anchorage
    (ALASKA_907, ["America/Adak", "America/Anchorage"], "2026-07-15T16:30:00Z", "defer", WINDOW, "2026-07-15T17:00:00Z"),
    (ALASKA_907, ["America/Adak", "America/Anchorage"], "2026-07-16T04:59:00Z", "allow", [], None),
    (ALASKA_907, ["America/Adak", "America/Anchorage"], "2026-07-16T05:00:00Z", "defer", WINDOW, "2026-07-16T17:00:00Z"),
])
def test_multi_zone_numbers(contact, zones, at, verdict, rules, next_at):
    decision = decide(contact, at)
    assert decision["timezones"] == zones
    check(decision, verdict, rules, next_at)


# --- number in one state, address in another ---------------------------------------------------

@pytest.mark.parametrize("contact", [FLORIDA_NUMBER_UTAH_ADDRESS, FLORIDA_NUMBER_UTAH_STATE],
                         ids=["zip only", "zip and state"])
@pytest.mark.parametrize("at,verdict,rules,next_at", [
    ("2026-07-15T16:00:00Z", "allow", [], None),                                    # Wed 12:00 EDT / 10:00 MDT
    ("2026-07-15T13:30:00Z", "defer", ["federal.hours", "state.FL.hours"], "2026-07-15T14:00:00Z"),  # 07:30 MDT: FL's 08:00 applies in Denver too
    ("2026-07-16T00:15:00Z", "defer", ["state.FL.hours"], "2026-07-16T14:00:00Z"),  # 20:15 EDT, 18:15 MDT
    ("2026-07-19T16:00:00Z", "defer", ["state.UT.hours"], "2026-07-20T14:00:00Z"),  # Sunday: UT closed
    ("2026-07-24T16:00:00Z", "defer", ["state.UT.holidays"], "2026-07-25T14:00:00Z"),  # Pioneer Day
])
def test_number_and_address_in_different_states(contact, at, verdict, rules, next_at):
    decision = decide(contact, at)
    assert decision["timezones"] == ["America/Denver", "America/New_York"]
    assert decision["states"] == ["FL", "UT"]
    check(decision, verdict, rules, next_at)


def test_florida_cap_applies_to_a_florida_number_with_a_utah_address():
    history = [("2026-07-15T14:00:00Z", "voice"), ("2026-07-15T14:30:00Z", "sms"), ("2026-07-15T15:00:00Z", "voice")]
    decision = decide(FLORIDA_NUMBER_UTAH_ADDRESS, "2026-07-15T16:00:00Z", history)
    check(decision, "defer", ["state.FL.cap"], "2026-07-16T14:00:00Z")


# --- Texas, Utah, Rhode Island, Pennsylvania, Mississippi --------------------------------------

@pytest.mark.parametrize("contact,at,verdict,rules,next_at", [
    # Texas: 09-21 Monday to Saturday, 12-21 Sunday (Central)
    (TEXAS, "2026-07-19T16:30:00Z", "defer", ["state.TX.hours"], "2026-07-19T17:00:00Z"),  # Sun 11:30 CDT
    (TEXAS, "2026-07-19T17:00:00Z", "allow", [], None),                                   # Sun 12:00 CDT
    (TEXAS, "2026-07-18T13:30:00Z", "defer", ["state.TX.hours"], "2026-07-18T14:00:00Z"),  # Sat 08:30 CDT
    (TEXAS, "2026-07-20T01:59:00Z", "allow", [], None),                                   # Sun 20:59 CDT
    (TEXAS, "2026-07-20T02:00:00Z", "defer", ["federal.hours", "state.TX.hours"], "2026-07-20T14:00:00Z"),             # Sun 21:00 -> Mon 09:00
    # Utah: Sundays and legal holidays closed
    (UTAH, "2026-07-24T18:00:00Z", "defer", ["state.UT.holidays"], "2026-07-25T14:00:00Z"),  # Pioneer Day, Fri
    (UTAH, "2026-07-24T03:30:00Z", "defer", WINDOW, "2026-07-25T14:00:00Z"),      # Thu 21:30 MDT: skip Fri
    (UTAH, "2026-07-19T18:00:00Z", "defer", ["state.UT.hours"], "2026-07-20T14:00:00Z"),   # Sunday
    (UTAH, "2026-07-26T03:30:00Z", "defer", WINDOW, "2026-07-27T14:00:00Z"),      # Sat 21:30 MDT: skip Sun
    (UTAH, "2026-07-25T18:00:00Z", "allow", [], None),                            # Saturday
    # Rhode Island: Mon-Fri 09-18 except holidays, Sat 10-17, Sunday closed
    (RHODE_ISLAND, "2026-07-11T15:00:00Z", "allow", [], None),                                  # Sat 11:00
    (RHODE_ISLAND, "2026-07-11T13:30:00Z", "defer", ["state.RI.hours"], "2026-07-11T14:00:00Z"),  # Sat 09:30
    (RHODE_ISLAND, "2026-07-11T21:00:00Z", "defer", ["state.RI.hours"], "2026-07-13T13:00:00Z"),  # Sat 17:00 -> Mon 09:00
    (RHODE_ISLAND, "2026-07-12T16:00:00Z", "defer", ["state.RI.hours"], "2026-07-13T13:00:00Z"),  # Sunday
    (RHODE_ISLAND, "2026-07-15T22:00:00Z", "defer", ["state.RI.hours"], "2026-07-16T13:00:00Z"),  # Wed 18:00
    (RHODE_ISLAND, "2026-09-07T16:00:00Z", "defer", ["state.RI.holidays"], "2026-09-08T13:00:00Z"),  # Labor Day (Mon)
    (RHODE_ISLAND, "2026-07-04T15:00:00Z", "allow", [], None),          # Independence Day on a Saturday: not banned
    (RHODE_ISLAND, "2026-07-02T22:30:00Z", "defer", ["state.RI.hours"], "2026-07-04T14:00:00Z"),  # Thu 18:30: Fri 3rd observed
    # Pennsylvania: the statute's holiday list
    (PENNSYLVANIA, "2027-06-14T16:00:00Z", "defer", ["state.PA.holidays"], "2027-06-15T12:00:00Z"),  # Flag Day (Mon)
    (PENNSYLVANIA, "2027-06-15T16:00:00Z", "allow", [], None),
    (PENNSYLVANIA, "2026-04-03T16:00:00Z", "defer", ["state.PA.holidays"], "2026-04-04T12:00:00Z"),  # Good Friday
    (PENNSYLVANIA, "2027-03-26T16:00:00Z", "defer", ["state.PA.holidays"], "2027-03-27T12:00:00Z"),  # Good Friday
    (PENNSYLVANIA, "2026-11-03T17:00:00Z", "defer", ["state.PA.holidays"], "2026-11-04T13:00:00Z"),  # Election Day
    (PENNSYLVANIA, "2026-11-04T17:00:00Z", "allow", [], None),
    # Mississippi: 08-20 Central Standard Time; during DST both readings hold, 09:00-20:00 CDT
    (MISSISSIPPI, "2026-07-15T13:30:00Z", "defer", ["state.MS.hours"], "2026-07-15T14:00:00Z"),  # 08:30 CDT
    (MISSISSIPPI, "2026-07-15T14:00:00Z", "allow", [], None),                                   # 09:00 CDT
    (MISSISSIPPI, "2026-07-16T00:59:00Z", "allow", [], None),                                   # 19:59 CDT
    (MISSISSIPPI, "2026-07-16T01:00:00Z", "defer", ["state.MS.hours"], "2026-07-16T14:00:00Z"),  # 20:00 CDT
    (MISSISSIPPI, "2026-01-14T14:00:00Z", "allow", [], None),                                   # 08:00 CST
    (MISSISSIPPI, "2026-01-14T13:59:00Z", "defer", ["federal.hours", "state.MS.hours"], "2026-01-14T14:00:00Z"),             # 07:59 CST
    (MISSISSIPPI, "2026-07-19T16:00:00Z", "defer", ["state.MS.hours"], "2026-07-20T14:00:00Z"),  # Sunday closed
])
def test_state_days_and_hours(contact, at, verdict, rules, next_at):
    check(decide(contact, at), verdict, rules, next_at)


def test_mississippi_detail_says_standard_time():
    decision = decide(MISSISSIPPI, "2026-07-15T13:30:00Z")
    assert "standard time" in decision["reasons"][0]["detail"]


# --- frequency caps: FL, OK, MD, voice and SMS together ----------------------------------------

AT = "2026-07-15T16:00:00Z"     # Wednesday 12:00 EDT / 11:00 CDT


@pytest.mark.parametrize("contact,state", [(FLORIDA, "FL"), (OKLAHOMA, "OK"), (MARYLAND, "MD")])
@pytest.mark.parametrize("history,verdict,next_at", [
    pytest.param([("2026-07-14T18:00:00Z", "voice"), ("2026-07-15T13:00:00Z", "sms"), ("2026-07-15T15:00:00Z", "voice")],
                 "defer", "2026-07-15T18:00:00Z", id="three in 24h: free 24h after the oldest"),
    pytest.param([("2026-07-14T18:00:00Z", "sms"), ("2026-07-15T13:00:00Z", "sms"), ("2026-07-15T15:00:00Z", "sms")],
                 "defer", "2026-07-15T18:00:00Z", id="three texts"),
    pytest.param([("2026-07-15T13:00:00Z", "sms"), ("2026-07-15T15:00:00Z", "voice")],
                 "allow", None, id="two in 24h"),
    pytest.param([("2026-07-14T15:00:00Z", "voice"), ("2026-07-15T13:00:00Z", "sms"), ("2026-07-15T15:00:00Z", "voice")],
                 "allow", None, id="oldest is 25h old"),
    pytest.param([("2026-07-14T16:00:00Z", "voice"), ("2026-07-15T13:00:00Z", "sms"), ("2026-07-15T15:00:00Z", "voice")],
                 "allow", None, id="oldest is exactly 24h old"),
    pytest.param([("2026-07-14T19:00:00Z", "voice"), ("2026-07-14T20:00:00Z", "voice"),
                  ("2026-07-15T13:00:00Z", "sms"), ("2026-07-15T15:00:00Z", "voice")],
                 "defer", "2026-07-15T20:00:00Z", id="four in 24h: free once only two remain"),
    pytest.param([("2026-07-15T13:00:00Z", "sms"), ("2026-07-15T15:00:00Z", "voice"), ("2026-07-15T17:00:00Z", "voice")],
                 "allow", None, id="an attempt after `at` does not count"),
])
def test_frequency_cap(contact, state, history, verdict, next_at):
    check(decide(contact, AT, history), verdict, [f"state.{state}.cap"] if verdict == "defer" else [], next_at)


def test_cap_applies_to_informational_texts_too():
    history = [("2026-07-14T18:00:00Z", "voice"), ("2026-07-15T13:00:00Z", "sms"), ("2026-07-15T15:00:00Z", "voice")]
    decision = decide(FLORIDA, AT, history, channel="sms", voice=None, purpose="informational",
                      consents=[{"kind": "express", "channels": ["sms"], "purposes": ["informational"],
                                 "granted_at": "2026-01-01T00:00:00Z"}])
    check(decision, "defer", ["state.FL.cap"], "2026-07-15T18:00:00Z")


# --- next_allowed_at across days, Sundays, holidays and caps together --------------------------

def test_cap_freeing_on_saturday_night_in_utah_lands_on_monday_morning():
    # History is a fact whenever it happened; the oldest counted attempt frees the cap at
    # Sat 18:30 MDT, after FL's 20:00 EDT close. Sunday is closed in UT: Monday 08:00 MDT.
    history = [("2026-07-18T00:30:00Z", "sms"), ("2026-07-18T01:00:00Z", "voice"), ("2026-07-18T12:00:00Z", "sms")]
    decision = decide(FLORIDA_NUMBER_UTAH_ADDRESS, "2026-07-18T16:00:00Z", history)
    check(decision, "defer", ["state.FL.cap"], "2026-07-20T14:00:00Z")


def test_cap_freeing_after_thursday_close_skips_pioneer_day():
    # The cap frees at Thu 20:30 EDT, after FL's 20:00 close; Friday 2026-07-24 is Pioneer Day
    # in UT: Saturday 08:00 MDT.
    history = [("2026-07-23T00:30:00Z", "voice"), ("2026-07-23T14:00:00Z", "voice"), ("2026-07-23T15:00:00Z", "sms")]
    decision = decide(FLORIDA_NUMBER_UTAH_ADDRESS, "2026-07-23T16:00:00Z", history)
    check(decision, "defer", ["state.FL.cap"], "2026-07-25T14:00:00Z")


@pytest.mark.parametrize("contact,at,rules,next_at", [
    # UT: Saturday evening -> Sunday closed -> Monday
    (UTAH, "2026-07-19T03:30:00Z", WINDOW, "2026-07-20T14:00:00Z"),
    # UT: Sat 2026-07-25 after Pioneer Day Friday; Friday evening -> Saturday
    (UTAH, "2026-07-24T18:00:00Z", ["state.UT.holidays"], "2026-07-25T14:00:00Z"),
    # RI: Friday 18:00 -> Saturday 10:00
    (RHODE_ISLAND, "2026-07-17T22:00:00Z", ["state.RI.hours"], "2026-07-18T14:00:00Z"),
    # RI: Friday before Labor Day 18:00 -> Sat 10:00 (the holiday Monday is later)
    (RHODE_ISLAND, "2026-09-04T22:00:00Z", ["state.RI.hours"], "2026-09-05T14:00:00Z"),
    # RI: Sat before Labor Day 17:00 -> Sunday closed, Monday holiday -> Tuesday 09:00
    (RHODE_ISLAND, "2026-09-05T21:00:00Z", ["state.RI.hours"], "2026-09-08T13:00:00Z"),
    # PA: Election Day eve 21:00 EST -> Election Day -> Wednesday
    (PENNSYLVANIA, "2026-11-03T02:00:00Z", WINDOW, "2026-11-04T13:00:00Z"),
])
def test_next_allowed_skips_closed_days(contact, at, rules, next_at):
    check(decide(contact, at), "defer", rules, next_at)


# --- effective dates ----------------------------------------------------------------------------

@pytest.mark.parametrize("contact,at,verdict,rules,next_at", [
    (FLORIDA, "2021-07-01T00:30:00Z", "allow", [], None),                                   # 2021-06-30 20:30 EDT: 08-21
    (FLORIDA, "2021-07-02T00:30:00Z", "defer", ["state.FL.hours"], "2021-07-02T12:00:00Z"),  # 2021-07-01 20:30 EDT: 08-20
    (CONNECTICUT, "2023-10-01T00:30:00Z", "allow", [], None),                               # 2023-09-30 20:30 EDT: 09-21
    (CONNECTICUT, "2023-10-02T00:30:00Z", "defer", ["state.CT.hours"], "2023-10-02T13:00:00Z"),  # 2023-10-01 20:30 EDT: 09-20
    (CONNECTICUT, "2023-09-30T12:30:00Z", "defer", ["state.CT.hours"], "2023-09-30T13:00:00Z"),  # 08:30 EDT: 09:00 start before too
])
def test_effective_dates(contact, at, verdict, rules, next_at):
    check(decide(contact, at), verdict, rules, next_at)


@pytest.mark.parametrize("contact,at,history", [
    # Local 2021-06-30 20:30 EDT: the FL entry (cap, 08-20) starts 2021-07-01 local; UTC is already July 1.
    (FLORIDA, "2021-07-01T00:30:00Z",
     [("2021-06-30T14:00:00Z", "voice"), ("2021-06-30T16:00:00Z", "sms"), ("2021-06-30T18:00:00Z", "voice")]),
    # Local 2023-12-31 19:30 EST: Maryland's Act starts 2024-01-01 local; UTC is already 2024.
    (MARYLAND, "2024-01-01T00:30:00Z",
     [("2023-12-31T14:00:00Z", "voice"), ("2023-12-31T16:00:00Z", "sms"), ("2023-12-31T18:00:00Z", "voice")]),
])
def test_state_cap_starts_on_the_local_effective_date(contact, at, history):
    check(decide(contact, at, history), "allow", [], None)


@pytest.mark.parametrize("contact,at", [
    (FLORIDA, "2021-07-01T00:30:00Z"),       # 2021-06-30 20:30 EDT
    (MARYLAND, "2024-01-01T00:30:00Z"),      # 2023-12-31 19:30 EST
])
def test_mini_tcpa_consent_starts_on_the_local_effective_date(contact, at):
    # An automated live call to a landline needs no consent before the state's act is in force.
    check(decide(contact, at, automated=True), "allow", [], None)


def test_next_allowed_rechecks_caps_that_take_effect_at_the_window_opening():
    # Sunday 2023-12-31 in Mississippi: closed. The next opening is Monday 2024-01-01, the day
    # Maryland's cap takes effect; three attempts at 23:59Z still count then, so the first
    # instant with no deferring reason is when they age out, not the opening itself.
    from consent.gate import evaluate
    from consent.rules import load_pack
    from consent.scenario import parse_scenario

    raw = {"at": "2024-01-01T00:00:00Z", "channel": "sms", "purpose": "telemarketing", "automated": False,
           "contact": {"phone": "+16012000000", "line_type": "mobile", "state": "MD"},
           "consents": [{"kind": "written", "channels": ["voice", "sms"], "purposes": ["telemarketing"],
                         "granted_at": "2020-01-01T00:00:00Z"}],
           "dnc": {"national": {"listed": False, "synced_at": "2023-12-31T00:00:00Z"}},
           "history": [{"at": "2023-12-31T23:59:00Z", "channel": "voice"}] * 3}
    pack = load_pack()
    request, facts, at = parse_scenario(raw)
    decision = evaluate(request, facts, pack, at)
    assert decision.verdict.value == "defer"
    assert decision.next_allowed_at.isoformat() == "2024-01-01T23:59:00+00:00"
    later = evaluate(request, facts, pack, decision.next_allowed_at)
    assert later.verdict.value == "allow", later.reasons


def test_a_candidate_set_that_never_opens_defers_with_no_next_instant():
    # Rhode Island's hours must hold in New York time and, for a Guam address, in Guam time too:
    # 09:00-18:00 in both never overlaps, so there is no instant to defer to.
    from consent.gate import evaluate
    from consent.rules import load_pack
    from consent.scenario import parse_scenario

    raw = {"at": "2026-07-15T16:00:00Z", "channel": "voice", "purpose": "telemarketing", "voice": "live",
           "automated": False, "contact": {"phone": "+14012000000", "line_type": "landline", "state": "GU"},
           "dnc": {"national": {"listed": False, "synced_at": "2026-07-10T00:00:00Z"}}}
    request, facts, at = parse_scenario(raw)
    decision = evaluate(request, facts, load_pack(), at)
    assert decision.verdict.value == "defer"
    assert decision.next_allowed_at is None
    assert {reason.code for reason in decision.reasons} == {"calling_window"}
