"""Candidate time zones and states of an imported contact, cached on what they depend on.

The rules are `consent.location.resolve_location`'s: zones are the number's zones plus the ZIP's
zone, or, without a known ZIP zone, every zone of the address state; states are the number's
state plus the given state plus the ZIP's state (DESIGN.md: both, when they differ). `resolve_location` caches
on the whole phone, which never hits across a million distinct numbers; the answer depends only
on (NPA-NXX, ZIP zone, address state), a few thousand keys, so that is what is cached here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from consent.location import STATE_CODES_BY_NAME, UnknownState, known_states, prefix_facts, zip_facts, zones_for_state

_STATE_CODES_BY_LOWER_NAME = {name.lower(): code for name, code in STATE_CODES_BY_NAME.items()}
_ZIP = re.compile(r"(\d{3,5})(?:[ \-]?\d{4})?")


@dataclass(frozen=True, slots=True)
class Placement:
    timezones: str              # space-separated, sorted: the Contact column's format
    states: str


# Memo tables are dropped when they grow past this: a file of a million distinct junk ZIPs
# must not hold them all.
_MEMO_LIMIT = 200_000
_NOT_SEEN = object()
_NO_SUCH_STATE = object()


class Placer:
    """`place` for the rows of one import, at a few dict lookups a row. The cleaning of raw ZIP
    and state cells is memoised per cell (a list repeats the same few thousand), the number's
    facts per +1NPANXX, and the placement per (number facts, address facts). Those two are keyed
    by small ints standing for their (zones, state) values: hashing tuples of zone names on every
    row cost more than the rest of the placement."""

    def __init__(self) -> None:
        self._zips: dict[str, tuple[str | None, str | None, str | None]] = {}
        self._states: dict[str, object] = {}
        self._numbers: dict[str, int] = {}                          # +1NPANXX -> number facts id
        self._addresses: dict[tuple[str | None, str | None, str | None], int] = {}   # (ZIP zone, state, ZIP state) -> id
        self._placements: dict[tuple[int, int], Placement] = {}
        self._number_facts = _Interned()        # (zones, state) of a number
        self._address_facts = _Interned()       # (zones, states) an address adds

    def resolve(self, e164: str, raw_zip: str, raw_state: str) -> tuple[str | None, str | None, Placement]:
        """(cleaned ZIP, cleaned state, placement); raises UnknownState for a state cell that
        names no state."""
        state = self._states.get(raw_state, _NOT_SEEN)
        if state is _NOT_SEEN:
            state = self._remember(self._states, raw_state, _clean_state_or_marker(raw_state))
        if state is _NO_SUCH_STATE:
            # A fresh exception each time: re-raising one stored instance would chain every
            # raise's frames (and the rows they hold) onto its traceback.
            raise UnknownState(f"unknown state {raw_state.strip()!r}: use a two-letter USPS code such as NY")
        zip_entry = self._zips.get(raw_zip)
        if zip_entry is None:
            zip_entry = self._remember(self._zips, raw_zip, _zip_entry(raw_zip))
        zip_code, zip_zone, zip_state = zip_entry
        address_key = (zip_zone, state, zip_state)
        address_id = self._addresses.get(address_key)
        if address_id is None:
            address_id = self._addresses[address_key] = self._address_facts.id_of(
                (_address_zones(zip_zone, state or zip_state), _address_states(state, zip_state)))
        prefix = e164[:8]
        number_id = self._numbers.get(prefix)
        if number_id is None:
            zones, number_state, _region = prefix_facts(prefix)
            number_id = self._remember(self._numbers, prefix, self._number_facts.id_of((zones, number_state)))
        placement = self._placements.get((number_id, address_id))
        if placement is None:
            placement = self._placements[number_id, address_id] = _combine(
                *self._number_facts.value_of(number_id), *self._address_facts.value_of(address_id))
        return zip_code, state, placement

    @staticmethod
    def _remember(memo: dict, key, value):
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[key] = value
        return value


class _Interned:
    """Small ints standing for values. A list has a few hundred (zones, state) pairs of numbers
    and of addresses, so these, and the placements keyed by them, stay small."""

    def __init__(self) -> None:
        self._ids: dict[tuple, int] = {}
        self._values: list[tuple] = []

    def id_of(self, value: tuple) -> int:
        value_id = self._ids.get(value)
        if value_id is None:
            value_id = self._ids[value] = len(self._values)
            self._values.append(value)
        return value_id

    def value_of(self, value_id: int) -> tuple:
        return self._values[value_id]


def _clean_state_or_marker(raw: str) -> str | None | object:
    try:
        return clean_state(raw)
    except UnknownState:
        return _NO_SUCH_STATE


def _zip_entry(raw: str) -> tuple[str | None, str | None, str | None]:
    zip_code = clean_zip(raw)
    zip_zone, zip_state = zip_facts(zip_code) if zip_code else (None, None)
    if zip_state not in _known_states():
        # Military ZIPs (AA, AE, AP) name no state with calling rules or zones.
        zip_state = None
    return zip_code, zip_zone, zip_state


def clean_zip(raw: str | None) -> str | None:
    """A five-digit ZIP from `raw`, or `raw` stripped when it is no US ZIP at all.

    Spreadsheets drop the leading zeros of New England and New Jersey ZIPs (02134 becomes 2134),
    so three and four digits are padded back."""
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        return None
    match = _ZIP.fullmatch(text)
    return match.group(1).zfill(5) if match else text


def clean_state(raw: str | None) -> str | None:
    """The USPS code of a state given as a code or a full name; raises UnknownState otherwise."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    code = text.upper() if len(text) == 2 else _STATE_CODES_BY_LOWER_NAME.get(text.lower())
    if code is None or code not in _known_states():
        raise UnknownState(f"unknown state {text!r}: use a two-letter USPS code such as NY")
    return code


def place(e164: str, zip_code: str | None, state: str | None) -> Placement:
    """Zones and states of a normalised number with a cleaned ZIP and state."""
    _zip_code, zip_zone, zip_state = _zip_entry(zip_code or "")
    return _place_cached(e164[:8], zip_zone, state, zip_state)


@lru_cache(maxsize=1)
def _known_states() -> frozenset[str]:
    return known_states()


def _place_cached(e164_prefix: str, zip_zone: str | None, state: str | None, zip_state: str | None) -> Placement:
    # Cached in parts: (prefix, ZIP zone, state) together has hundreds of thousands of values
    # in a national list, each part alone a few thousand.
    zones, number_state, _region = prefix_facts(e164_prefix)
    return _combine(zones, number_state, _address_zones(zip_zone, state or zip_state),
                    _address_states(state, zip_state))


def _address_states(state: str | None, zip_state: str | None) -> tuple[str, ...]:
    """The given state and the ZIP's: a NY state with a Miami ZIP is under Florida's rules too."""
    return tuple(sorted({s for s in (state, zip_state) if s}))


@lru_cache(maxsize=16_384)
def _address_zones(zip_zone: str | None, address_state: str | None) -> tuple[str, ...]:
    if zip_zone:
        return (zip_zone,)
    return zones_for_state(address_state) if address_state else ()


@lru_cache(maxsize=65_536)
def _combine(number_zones: tuple[str, ...], number_state: str | None, address_zones: tuple[str, ...],
             address_states: tuple[str, ...]) -> Placement:
    candidate_zones = set(number_zones) | set(address_zones)
    states = {s for s in (number_state, *address_states) if s}
    return Placement(" ".join(sorted(candidate_zones)), " ".join(sorted(states)))
