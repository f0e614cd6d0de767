"""Phone numbers of a contact list, to E.164, fast enough for a million rows.

`phonenumbers.parse` plus `is_valid_number` costs 15-30 µs a number. Most rows of a US list are
ten digits in one of a handful of layouts, and for every region we accept (the US and its
territories) libphonenumber's patterns decide validity, region, zones and state on the NPA-NXX
alone (each pattern ends in `\\d{4}`). So the fast path matches those layouts with one regex and
caches the verdict per six-digit prefix. Everything else, and every prefix of a region whose
patterns look deeper (Barbados mobiles, for one), goes through `phonenumbers` itself;
`normalise_phone_reference` is that slow path alone and the tests check the two always agree.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

import phonenumbers

from consent.bulk_numbers import valid_national_number
from consent.location import area_code_facts, prefix_facts

DEFAULT_REGION = "US"
# The US and the territories its rules (and so the gate) cover.
US_REGIONS = frozenset({"US", "PR", "GU", "VI", "AS", "MP"})


class Reason:
    """Why a row was rejected: stable codes, used in reports and by scripts."""

    MISSING_PHONE = "missing_phone"
    INVALID_NUMBER = "invalid_number"
    # Never converted: a letter O typed for a zero would turn into 6 and dial a stranger.
    LETTERS_IN_NUMBER = "letters_in_number"
    # Rejected rather than stripped: contacts are keyed by E.164, so keeping the main number
    # would dial a switchboard and merge colleagues on one line as duplicates.
    EXTENSION_NOT_ALLOWED = "extension_not_allowed"
    NOT_US_NUMBER = "not_us_number"
    UNKNOWN_STATE = "unknown_state"
    RAGGED_ROW = "ragged_row"


class PhoneResult(NamedTuple):
    e164: str | None
    reason: str | None          # one of Reason when e164 is None


# The layouts of a plain NANP number: optional 1 or +1, area code (optionally in parentheses),
# exchange and line, separated by at most one space, dot or hyphen. The area code starts with
# 2-9: a leading 0 or 1 may be a dialling prefix (011 is the US international prefix), which
# only phonenumbers reads right.
_PLAIN_NANP = re.compile(r"\s*(?:\+?1[ .\-]?)?(\([2-9]\d\d\)|[2-9]\d\d)[ .\-]?(\d{3})[ .\-]?(\d{4})\s*")
# An extension at the end, in the spellings phonenumbers understands.
_PLAIN_NANP_MATCH = _PLAIN_NANP.fullmatch
_EXTENSION_SUFFIX = re.compile(r"(?i)[\s,;]*(?:e?xt(?:ension|n)?\.?|x|#|;ext=)[\s:.]*\d{1,7}#?\s*$")
_LETTER = re.compile(r"[^\W\d_]")


def normalise_phone(raw: str | None, region: str = DEFAULT_REGION) -> PhoneResult:
    """E.164 of `raw`, or the reason it cannot be called."""
    if raw is None or not raw.strip():
        return _MISSING
    # The per-prefix verdicts read a bare ten-digit number as US: only for US-default lists.
    match = _PLAIN_NANP_MATCH(raw) if region == DEFAULT_REGION else None
    if match is not None:
        area_code, exchange, line = match.groups()
        if area_code[0] == "(":
            area_code = area_code[1:4]
        prefix = area_code + exchange
        verdict = _prefix_verdict(prefix)
        if verdict is not None:
            return PhoneResult("+1" + prefix + line, None) if verdict else _INVALID
    return normalise_phone_reference(raw, region)


def plain_nanp_e164(raw: str) -> str | None:
    """E.164 of `raw` when it is a plain NANP layout of a prefix valid in the US, else None
    (then `normalise_phone` has the answer and the reason). The import's hot path: a row of a
    clean US list costs one regex and one cached verdict, and no result tuple."""
    match = _PLAIN_NANP_MATCH(raw)
    if match is None:
        return None
    area_code, exchange, line = match.groups()
    if area_code[0] == "(":
        area_code = area_code[1:4]
    prefix = area_code + exchange
    return "+1" + prefix + line if _prefix_verdict(prefix) else None


def normalise_phone_reference(raw: str | None, region: str = DEFAULT_REGION) -> PhoneResult:
    """The same answer as `normalise_phone`, from `phonenumbers` alone (the slow path)."""
    if raw is None or not raw.strip():
        return _MISSING
    text = raw.strip()
    if _LETTER.search(_EXTENSION_SUFFIX.sub("", text)):
        return PhoneResult(None, Reason.LETTERS_IN_NUMBER)
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return _INVALID
    if number.country_code != 1:
        return PhoneResult(None, Reason.NOT_US_NUMBER)
    if not phonenumbers.is_valid_number(number):
        return _INVALID
    if phonenumbers.region_code_for_number(number) not in US_REGIONS:
        return PhoneResult(None, Reason.NOT_US_NUMBER)
    if number.extension:
        return PhoneResult(None, Reason.EXTENSION_NOT_ALLOWED)
    return PhoneResult(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None)


@lru_cache(maxsize=262_144)
def _prefix_verdict(prefix: str) -> bool | None:
    """True: every number with this NPA-NXX is a valid US number; False: none is valid;
    None: ask phonenumbers per number (a region outside the US, whose patterns may look past
    the NPA-NXX). A real list touches tens of thousands of prefixes; the bound keeps a list of
    random digits from growing the cache past ~40 MB.

    An area code lies in one region (cached per NPA), and validity comes from one regex built
    from phonenumbers' own metadata (`consent.bulk_numbers`): ~50 times cheaper than asking
    phonenumbers per prefix. Non-geographic area codes (toll-free 8XX, 5XX, 900: shared by
    every NANP country, so no state) and those whose region the sample cannot tell are asked
    the exact way."""
    state, region = area_code_facts(prefix[:3])
    if region is None or state is None:
        return exact_prefix_verdict(prefix)
    if region not in US_REGIONS:
        return None
    return valid_national_number(prefix + "0000")


def exact_prefix_verdict(prefix: str) -> bool | None:
    """The same verdict from phonenumbers alone (the tests compare the two)."""
    number = phonenumbers.PhoneNumber(country_code=1, national_number=int(prefix + "0000"))
    # is_valid_number is region_code_for_number plus is_valid_number_for_region: asked apart,
    # the region lookup (the costly half) runs once.
    region = phonenumbers.region_code_for_number(number)
    if region is None:
        return False
    if region not in US_REGIONS:
        return None
    return phonenumbers.is_valid_number_for_region(number, region)


_MISSING = PhoneResult(None, Reason.MISSING_PHONE)
_INVALID = PhoneResult(None, Reason.INVALID_NUMBER)


def number_facts(e164: str) -> tuple[tuple[str, ...], str | None]:
    """(zones, state) of a normalised number; `consent.location` caches them per NPA-NXX."""
    zones, state, _region = prefix_facts(e164[:8])
    return zones, state
