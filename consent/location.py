"""Where a contact may be: candidate time zones and states from the number, the ZIP and the state.

Everything here depends on the NPA-NXX prefix, the ZIP or the state only, so each lookup is
cached on that key: a million-row list touches a few thousand prefixes.

A number's zones are phonenumbers' corrected by a rule pack's zone overrides (689 is Eastern,
928 has the Navajo Nation's daylight time, ...). Every lookup takes the overrides to apply; none
given means the default pack's, so no caller gets the uncorrected zones by forgetting them.
"""
from __future__ import annotations

import zoneinfo
from collections import defaultdict
from dataclasses import replace
from functools import lru_cache

import phonenumbers
from phonenumbers import geocoder, timezone as number_timezones
from phonenumbers.tzdata import TIMEZONE_DATA

from consent import bulk_numbers
from consent.rules import ZoneOverrides, load_pack
from consent.types import Location

NANP_COUNTRY_CODE = 1
# phonenumbers answers a non-geographic +1 number (toll-free, personal) with every NANP zone.
_NANP_WIDE_ZONES = frozenset(TIMEZONE_DATA["1"])
_TERRITORY_REGIONS = {"PR": "PR", "GU": "GU", "VI": "VI", "AS": "AS", "MP": "MP"}

# USPS codes for the names phonenumbers' geocoder uses at area-code level.
STATE_CODES_BY_NAME = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Washington D.C.": "DC",
    "District of Columbia": "DC", "Florida": "FL", "Georgia": "GA", "Hawaii": "HI", "Idaho": "ID",
    "Illinois": "IL", "Indiana": "IN", "Iowa": "IA", "Kansas": "KS", "Kentucky": "KY",
    "Louisiana": "LA", "Maine": "ME", "Maryland": "MD", "Massachusetts": "MA", "Michigan": "MI",
    "Minnesota": "MN", "Mississippi": "MS", "Missouri": "MO", "Montana": "MT", "Nebraska": "NE",
    "Nevada": "NV", "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM",
    "New York": "NY", "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH",
    "Oklahoma": "OK", "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI",
    "South Carolina": "SC", "South Dakota": "SD", "Tennessee": "TN", "Texas": "TX", "Utah": "UT",
    "Vermont": "VT", "Virginia": "VA", "Washington": "WA", "Washington State": "WA",
    "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY", "Puerto Rico": "PR", "Guam": "GU",
}


class UnknownState(ValueError):
    """A state code that names no US state, DC or territory."""


def parse_nanp(phone: str, default_region: str = "US") -> phonenumbers.PhoneNumber | None:
    """The parsed number when `phone` is a valid NANP number, else None."""
    try:
        number = phonenumbers.parse(phone, default_region)
    except phonenumbers.NumberParseException:
        return None
    if number.country_code != NANP_COUNTRY_CODE or not phonenumbers.is_valid_number(number):
        return None
    return number


def to_e164(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def nanp_e164(phone: str) -> str | None:
    """E.164 of a valid NANP number, else None: the common spellings through the fast reader,
    anything else (extensions, vanity letters, odd punctuation) through phonenumbers."""
    e164, _reason = bulk_numbers.normalise(phone)
    if e164 is not None:
        return e164
    number = parse_nanp(phone)
    return None if number is None else to_e164(number)


@lru_cache(maxsize=None)
def _available_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def default_zone_overrides() -> ZoneOverrides:
    """The zone overrides of the default rule pack (what a lookup given none applies)."""
    return load_pack().zone_overrides


def prefix_facts(e164_prefix: str, zone_overrides: ZoneOverrides | None = None
                 ) -> tuple[tuple[str, ...], str | None, str | None]:
    """(zones, state, region) of a valid number, cached on its first 8 characters (+1NPANXX).

    Zones are phonenumbers' corrected by `zone_overrides` (the default pack's when None), empty
    for non-geographic numbers; libphonenumber keys NANP zones by at most NPA-NXX, so the prefix
    decides them. State and region belong to the area code.
    """
    return _prefix_facts(e164_prefix, zone_overrides or default_zone_overrides())


@lru_cache(maxsize=65536)
def _prefix_facts(e164_prefix: str, zone_overrides: ZoneOverrides) -> tuple[tuple[str, ...], str | None, str | None]:
    zones, state, region = library_prefix_facts(e164_prefix)
    corrected = zone_overrides.zones_for(e164_prefix[2:8]) if zones else None
    return (zones if corrected is None else corrected), state, region


@lru_cache(maxsize=65536)
def library_prefix_facts(e164_prefix: str) -> tuple[tuple[str, ...], str | None, str | None]:
    """prefix_facts as phonenumbers alone says, before any override (what the zone table test
    compares)."""
    number = phonenumbers.PhoneNumber(country_code=NANP_COUNTRY_CODE, national_number=int(e164_prefix[2:] + "0000"))
    zones = tuple(number_timezones.time_zones_for_geographical_number(number))
    state, region = area_code_facts(e164_prefix[2:5])
    if not zones or zones == ("Etc/Unknown",) or frozenset(zones) == _NANP_WIDE_ZONES:
        zones = ()
    return tuple(sorted(z for z in zones if z in _available_zones())), state, region


@lru_cache(maxsize=1024)
def area_code_facts(area_code: str) -> tuple[str | None, str | None]:
    """(state, region) of an area code: every NANP area code lies in one state or territory."""
    number = phonenumbers.parse(f"+1{area_code}5550100")
    region = phonenumbers.region_code_for_number(number)
    return _number_state(number, region), region


def _number_state(number: phonenumbers.PhoneNumber, region: str | None) -> str | None:
    if region in _TERRITORY_REGIONS:
        return _TERRITORY_REGIONS[region]
    if region != "US":
        return None
    description = geocoder.description_for_number(number, "en")
    if ", " in description:
        return description.rsplit(", ", 1)[1]
    return STATE_CODES_BY_NAME.get(description)


@lru_cache(maxsize=1)
def _zip_table() -> tuple[dict[str, tuple[str | None, str]], dict[str, tuple[str, ...]]]:
    """ZIP -> (valid IANA zone or None, state) and state -> its zones, from the zipcodes data."""
    import zipcodes  # loads its whole data set at import: only when a ZIP or state is needed

    by_zip: dict[str, tuple[str | None, str]] = {}
    zones_by_state: dict[str, set[str]] = defaultdict(set)
    for entry in zipcodes.list_all():
        zone = entry["timezone"] if entry["timezone"] in _available_zones() else None
        by_zip[entry["zip_code"]] = (zone, entry["state"])
        if zone:
            zones_by_state[entry["state"]].add(zone)
    return by_zip, {state: tuple(sorted(zones)) for state, zones in zones_by_state.items()}


def known_states() -> frozenset[str]:
    return frozenset(_zip_table()[1])


def zones_for_state(state: str) -> tuple[str, ...]:
    zones = _zip_table()[1].get(state.upper())
    if zones is None:
        raise UnknownState(f"unknown state code {state!r}: use a two-letter USPS code such as NY")
    return zones


def zip_facts(zip_code: str) -> tuple[str | None, str | None]:
    """(zone, state) of a ZIP; zone None when the ZIP is unknown or its zone is not a valid IANA zone."""
    return _zip_table()[0].get(zip_code.strip()[:5], (None, None))


def resolve_location(phone: str, zip_code: str | None = None, state: str | None = None,
                     zone_overrides: ZoneOverrides | None = None) -> Location:
    """Candidate zones and states for a contact, the number's zones corrected by `zone_overrides`
    (the default pack's when None); the gate decides what an empty set means."""
    return _resolve_location(phone, zip_code, state, zone_overrides or default_zone_overrides())


def location_under(location: Location, zip_code: str | None, state: str | None,
                   zone_overrides: ZoneOverrides) -> Location:
    """`location` with its zones formed again under `zone_overrides` when its number is in a
    prefix that they, or the defaults it may have been resolved with, override; otherwise (and
    when that changes nothing) `location` itself.

    A stored contact's zones, or a scenario's, were resolved under the default pack (or under
    none, before overrides existed); the gate decides under its own pack, and replay under the
    pack a decision named, so the zones of an overridden prefix are formed again from the number,
    ZIP and state under that pack. States do not depend on zones: they are kept.
    """
    e164 = location.e164
    prefixes = override_prefixes(zone_overrides)
    if e164 is None or (e164[2:5] not in prefixes and e164[2:8] not in prefixes):
        return location
    if location.number_zones is not None and location.address_zones is not None:
        zones = zones_from_parts(e164[:8], location.number_zones, location.address_zones, zone_overrides)
    else:
        zones = _candidate_zones(e164[:8], zip_code, state, zone_overrides)
    return location if zones == location.timezones else replace(location, timezones=zones)


@lru_cache(maxsize=4096)
def zones_from_parts(e164_prefix: str, number_zones: tuple[str, ...], address_zones: tuple[str, ...],
                     zone_overrides: ZoneOverrides) -> tuple[str, ...]:
    """Candidate zones from what they are made of, with no lookup: the number's zones as the
    overrides correct them (a number phonenumbers places nowhere stays nowhere), plus the
    address's. `_candidate_zones` gives the same for the parts `resolve_location` records."""
    corrected = zone_overrides.zones_for(e164_prefix[2:8]) if number_zones else None
    return tuple(sorted({*(number_zones if corrected is None else corrected), *address_zones}))


@lru_cache(maxsize=64)
def override_prefixes(zone_overrides: ZoneOverrides) -> frozenset[str]:
    """The prefixes whose zones `location_under` forms again: those `zone_overrides` name and
    those the default pack's name (a location may have been resolved under either)."""
    return zone_overrides.prefixes | default_zone_overrides().prefixes


@lru_cache(maxsize=262144)
def _resolve_location(phone: str, zip_code: str | None, state: str | None, zone_overrides: ZoneOverrides) -> Location:
    e164 = nanp_e164(phone)
    if e164 is None:
        return Location(e164=None, timezones=(), states=())
    _zones, number_state, region = _prefix_facts(e164[:8], zone_overrides)
    states = {s for s in (number_state, *_address_states(zip_code, state)) if s}
    return Location(e164=e164, timezones=_candidate_zones(e164[:8], zip_code, state, zone_overrides),
                    states=tuple(sorted(states)), region=region,
                    number_zones=library_prefix_facts(e164[:8])[0], address_zones=_address_zones(zip_code, state))


@lru_cache(maxsize=65536)
def _candidate_zones(e164_prefix: str, zip_code: str | None, state: str | None,
                     zone_overrides: ZoneOverrides) -> tuple[str, ...]:
    """The number's zones plus the ZIP's zone, or every zone of the address state without one."""
    zip_zone, address_state = _address_facts(zip_code, state)
    candidate_zones = set(_prefix_facts(e164_prefix, zone_overrides)[0])
    if zip_zone:
        candidate_zones.add(zip_zone)
    elif address_state:
        candidate_zones.update(zones_for_state(address_state))
    return tuple(sorted(candidate_zones))


def _address_zones(zip_code: str | None, state: str | None) -> tuple[str, ...]:
    """The zones an address adds to the number's: the ZIP's, else every zone of its state."""
    zip_zone, address_state = _address_facts(zip_code, state)
    if zip_zone:
        return (zip_zone,)
    return zones_for_state(address_state) if address_state else ()


def _address_states(zip_code: str | None, state: str | None) -> tuple[str, ...]:
    """The states an address adds: the given state and the ZIP's, both when they differ (a
    New York state with a Miami ZIP is decided under Florida's rules too: fail closed)."""
    zip_state = zip_facts(zip_code)[1] if zip_code else None
    if zip_state not in known_states():
        zip_state = None                    # military AA/AE/AP ZIPs name no state with rules
    return tuple(sorted({s for s in (state.upper() if state else None, zip_state) if s}))


def _address_facts(zip_code: str | None, state: str | None) -> tuple[str | None, str | None]:
    """(ZIP zone, address state). An address without a state still names one through its ZIP
    (military AA/AE/AP ZIPs name no state the rules know: they add nothing)."""
    zip_zone, zip_state = zip_facts(zip_code) if zip_code else (None, None)
    return zip_zone, (state.upper() if state else (zip_state if zip_state in known_states() else None))
