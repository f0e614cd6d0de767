"""Normalising many phone numbers fast, with a reason for each one that is not usable.

`phonenumbers.parse` plus `is_valid_number` costs ~35 µs a number: a million-row scrub would
spend half a minute there. Here the formats lists really hold (`2125550123`, `(212) 555-0123`,
`212.555.0123`, `+1 212-555-0123`, `1-212-555-0123`) are read directly, and validity is one
match against the union of libphonenumber's own number-type patterns for the +1 regions (what
`is_valid_number` checks, region by region), about 0.5 µs. tests/test_scrub_cmd.py compares
the result with `phonenumbers` on random numbers.
"""
from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneMetadata

# Characters people put between digits; anything else (letters, '#', '*') has a reason of its own.
_SEPARATORS = str.maketrans("", "", " ()-.\t/\u00a0")
_EXTENSION = re.compile(r"(?i)(?:ext\.?|extension|x|#)\s*\d+\s*$")
_LETTERS = re.compile(r"[A-Za-z]")

# Per-row reasons, stable codes that reports count.
EMPTY = "empty"
EXTENSION = "extension_not_allowed"
LETTERS = "letters_in_number"
INTERNATIONAL = "not_nanp_number"
WRONG_LENGTH = "wrong_length"
NOT_VALID = "not_valid_nanp_number"


# The number types `is_valid_number` accepts (anything but UNKNOWN).
_VALID_TYPES = ("fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost", "voip",
                "personal_number", "pager", "uan", "voicemail")


@lru_cache(maxsize=1)
def _nanp_valid_pattern() -> re.Pattern[str]:
    """One regex: a 10-digit national number some +1 region's metadata calls a valid type."""
    patterns: list[str] = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]:
        metadata = PhoneMetadata.metadata_for_region(region)
        for type_name in _VALID_TYPES:
            description = getattr(metadata, type_name, None)
            if description is not None and description.national_number_pattern:
                patterns.append(description.national_number_pattern)
    return re.compile("|".join(f"(?:{p})" for p in dict.fromkeys(patterns)))


def valid_national_number(digits: str) -> bool:
    return _nanp_valid_pattern().fullmatch(digits) is not None


def normalise(raw: str) -> tuple[str | None, str | None]:
    """(E.164, None) for a valid NANP number, else (None, reason code)."""
    if len(raw) == 10 and raw.isdigit() and raw.isascii():       # the commonest spelling
        return ("+1" + raw, None) if valid_national_number(raw) else (None, NOT_VALID)
    text = raw.strip()
    if not text:
        return None, EMPTY
    compact = text.translate(_SEPARATORS)
    if compact.isdigit() and compact.isascii():
        digits = compact
    elif compact.startswith("+") and compact[1:].isdigit() and compact.isascii():
        if not compact.startswith("+1"):
            return None, INTERNATIONAL
        digits = compact[1:]
    elif _EXTENSION.search(text):
        return None, EXTENSION
    elif _LETTERS.search(text):
        return None, LETTERS
    else:
        return None, NOT_VALID
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    if len(digits) != 10:
        return None, WRONG_LENGTH if not compact.startswith("+") or compact.startswith("+1") else INTERNATIONAL
    if not valid_national_number(digits):
        return None, NOT_VALID
    return "+1" + digits, None


def normalise_or_none(raw: str) -> str | None:
    return normalise(raw)[0]
