"""Every US area code's zones, as the gate forms them, against an independent table.

The gate's zones for a number are phonenumbers' corrected by the rule pack's zone overrides.
phonenumbers' time-zone data is generated and seldom reviewed (689, an Orlando overlay, sat in
Central time), so every area code it places in a US state or territory is compared here with
the zones of the ZIP codes that `zipcodes` lists the area code for, in the same state; an area
code no ZIP lists is compared with its state's zones. Zones are compared by their clocks (the
UTC offset over several years), so America/Detroit and America/New_York, or America/Boise and
America/Denver, are the same zone to the gate.

A disagreement is either a zone the gate gives the area code that none of its ZIPs is in, or a
zone some of its ZIPs are in that the gate does not give. Each one found was reviewed: the real
ones are zone overrides in consent/rule_packs/us.toml (with their sources); the rest are listed
in KNOWN below with the reason they are not. A new disagreement fails this test, and so does a
listed one that no longer holds, so the list stays true.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

import pytest
from phonenumbers.tzdata import TIMEZONE_DATA

from consent.location import area_code_facts, library_prefix_facts, prefix_facts, zones_for_state
from consent.rules import load_pack

US_REGIONS = {"US", "PR", "VI", "GU", "AS", "MP"}
# How a zone is named in messages: the first of these with the same clock, else its own name.
PREFERRED = ("America/New_York", "America/Chicago", "America/Denver", "America/Phoenix",
             "America/Los_Angeles", "America/Anchorage", "America/Adak", "Pacific/Honolulu",
             "America/Puerto_Rico", "Pacific/Guam")
# Daily instants over four years: enough to tell apart every pair of zones that differ today.
INSTANTS = tuple(datetime(2024, 1, 1, 13, tzinfo=timezone.utc) + timedelta(days=day) for day in range(4 * 365))

# (area code, "gate-only" | "zip-only", zone) -> why it is not a defect. "zip-only": some ZIPs
# listing the area code are in that zone and the gate does not give it; "gate-only": the gate
# gives a zone none of the area code's ZIPs is in.
KNOWN = {
    ("402", "zip-only", "America/Denver"):
        "8 Sandhills ZIPs in Cherry, Grant, Sheridan and Hooker counties (Mountain time) list 402 "
        "beside 308, the panhandle's code; 402 is eastern Nebraska, Central time. zipcodes lists "
        "every code that reaches a ZIP and no exchange, so no 402 exchange can be named; a "
        "contact with such a ZIP on file gets Mountain time from the ZIP",
    ("531", "zip-only", "America/Denver"):
        "531 is the overlay of 402: the same 8 Sandhills ZIPs as 402",
    ("765", "zip-only", "America/Chicago"):
        "3 ZIPs of Newton and Jasper counties (Central time: Goodland, Kentland, Remington) list "
        "765 beside 219, their own code; 765 is central Indiana, Eastern time",
    ("775", "gate-only", "America/Denver"):
        "phonenumbers gives 775 Mountain time for West Wendover (775-664) and, in its area-code "
        "default, for Jackpot: both keep Mountain time (they live off Utah and Idaho) though "
        "zipcodes puts their ZIPs 89883 and 89825 in Pacific time. A zone too many is stricter",
    ("865", "zip-only", "America/Chicago"):
        "4 ZIPs of Crossville and Crab Orchard (Cumberland County, Central time) list 865 beside "
        "931, their own code; 865 is Knoxville, Eastern time",
    ("915", "zip-only", "America/Chicago"):
        "5 ZIPs of Jeff Davis, Reeves, Culberson and Crockett counties (Central time, area code "
        "432 since 2003) still list 915; 915 is El Paso and Hudspeth County, Mountain time",
    ("931", "zip-only", "America/New_York"):
        "9 ZIPs of Morgan, Scott, Roane and Rhea counties (Eastern time, area codes 423 and 865) "
        "list 931 among their codes; 931 is Middle Tennessee, Central time",
}


@lru_cache(maxsize=None)
def clock(zone: str) -> str:
    """The zone's name in messages: one name per distinct clock."""
    tz = ZoneInfo(zone)
    offsets = tuple(instant.astimezone(tz).utcoffset() for instant in INSTANTS)
    for name in PREFERRED:
        if _offsets(name) == offsets:
            return name
    return zone


@lru_cache(maxsize=None)
def _offsets(zone: str) -> tuple[timedelta, ...]:
    tz = ZoneInfo(zone)
    return tuple(instant.astimezone(tz).utcoffset() for instant in INSTANTS)


def us_area_codes() -> dict[str, str]:
    """Area code -> state, for every +1 area code phonenumbers places in a US state or territory."""
    found = {}
    for key in TIMEZONE_DATA:
        if key.startswith("1") and len(key) >= 4:
            area_code = key[1:4]
            state, region = area_code_facts(area_code)
            if state and region in US_REGIONS:
                found[area_code] = state
    return found


def exchanges_of(area_code: str) -> list[str]:
    """Exchanges enough to meet every zone phonenumbers holds for the area code: all of them
    when its data goes below the area code, else one."""
    keys = [key for key in TIMEZONE_DATA if key.startswith("1" + area_code)]
    overridden = [prefix for prefix in load_pack().zone_overrides.prefixes if prefix.startswith(area_code)]
    if len(keys) > 1 or len(overridden) > 0:
        return [f"{nxx:03d}" for nxx in range(200, 1000)]
    return ["555"]


def gate_zones(area_code: str, facts=prefix_facts) -> set[str]:
    return {zone for nxx in exchanges_of(area_code) for zone in facts(f"+1{area_code}{nxx}")[0]}


@lru_cache(maxsize=1)
def zip_zones() -> dict[str, Counter]:
    """Area code -> Counter of (zone) over the ZIPs listing it in the area code's own state."""
    import zipcodes

    states = us_area_codes()
    valid = available_timezones()
    by_area_code: dict[str, Counter] = defaultdict(Counter)
    for entry in zipcodes.list_all():
        zone = entry["timezone"]
        if zone not in valid:      # a few entries name no IANA zone (e.g. "Napakiak")
            continue
        for area_code in entry["area_codes"] or ():
            if states.get(area_code) == entry["state"]:
                by_area_code[area_code][zone] += 1
    return by_area_code


def disagreements(facts=prefix_facts) -> dict[tuple[str, str, str], str]:
    """(area code, kind, zone) -> what was seen, for every area code the gate places in the US."""
    found = {}
    for area_code, state in sorted(us_area_codes().items()):
        ours = {clock(zone) for zone in gate_zones(area_code, facts)}
        listed = zip_zones().get(area_code)
        if listed:
            theirs = Counter()
            for zone, count in listed.items():
                theirs[clock(zone)] += count
            for zone in sorted(ours - set(theirs)):
                found[area_code, "gate-only", zone] = f"{state}: no ZIP listing {area_code} is in {zone}"
            for zone in sorted(set(theirs) - ours):
                found[area_code, "zip-only", zone] = (f"{state}: {theirs[zone]} ZIPs listing {area_code} are in "
                                                      f"{zone}; the gate gives {sorted(ours)}")
        else:
            # No ZIP lists it (a new overlay): its zones must at least be its state's.
            state_zones = {clock(zone) for zone in zones_for_state(state)} if _has_zones(state) else ours
            for zone in sorted(ours - state_zones):
                found[area_code, "gate-only", zone] = f"{state} has no ZIP in {zone}"
    return found


def _has_zones(state: str) -> bool:
    try:
        zones_for_state(state)
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def found() -> dict[tuple[str, str, str], str]:
    return disagreements()


def test_no_new_disagreement_with_the_zip_table(found):
    new = {key: seen for key, seen in found.items() if key not in KNOWN}
    assert not new, ("area codes whose zones disagree with zipcodes' ZIPs: review each, then add a "
                     "[[zone_override]] with its source to consent/rule_packs/us.toml, or explain it in "
                     f"KNOWN: {new}")


def test_every_known_disagreement_still_holds(found):
    stale = sorted(set(KNOWN) - set(found))
    assert not stale, f"listed in KNOWN but no longer a disagreement (remove them): {stale}"


def test_the_comparison_finds_what_phonenumbers_alone_gets_wrong():
    # Without the pack's overrides the table shows the defects the overrides fix: the test is
    # able to fail.
    raw = disagreements(library_prefix_facts)
    assert ("689", "gate-only", "America/Chicago") in raw and ("689", "zip-only", "America/New_York") in raw
    for area_code, zone in [("364", "America/Chicago"), ("448", "America/Chicago"), ("930", "America/Chicago"),
                            ("458", "America/Denver")]:
        assert (area_code, "zip-only", zone) in raw
    assert ("907", "gate-only", "Pacific/Honolulu") in raw


def test_every_override_changes_what_phonenumbers_says():
    # An override that phonenumbers has come to agree with is stale: remove it.
    for override in load_pack().zone_overrides.by_prefix.values():
        exchange = override.prefix[3:] or "555"
        library_zones = library_prefix_facts(f"+1{override.prefix[:3]}{exchange}")[0]
        assert set(library_zones) != set(override.zones), override.prefix
        assert override.source.strip()
