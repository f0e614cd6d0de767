"""Candidate zones and states: the number's, the ZIP's, else the given state's (DESIGN.md)."""
from __future__ import annotations

import pytest

from consent.location import UnknownState, nanp_e164, resolve_location


@pytest.mark.parametrize("phone,zip_code,state,zones,states", [
    ("(212) 555-0123", None, None, ("America/New_York",), ("NY",)),
    ("+12082000123", None, None, ("America/Boise", "America/Los_Angeles"), ("ID",)),        # 208 spans two zones
    ("+13055550123", "84101", "UT", ("America/Denver", "America/New_York"), ("FL", "UT")),  # number FL, address UT
    ("+18005550123", None, "TX", ("America/Chicago", "America/Denver"), ("TX",)),           # toll-free: the state's zones
    ("+18005550123", "98101", None, ("America/Los_Angeles",), ("WA",)),                      # the ZIP names its state
    ("+18005550123", None, None, (), ()),                                                    # nothing places it
    ("+12125550123", "09001", None, ("America/New_York",), ("NY",)),                         # military ZIP adds nothing
    ("+17875550123", None, None, ("America/Puerto_Rico",), ("PR",)),
])
def test_candidates(phone, zip_code, state, zones, states):
    location = resolve_location(phone, zip_code, state)
    assert (location.timezones, location.states) == (zones, states)


@pytest.mark.parametrize("phone,e164", [
    ("(212) 555-0123", "+12125550123"), ("212.555.0123", "+12125550123"), ("1-212-555-0123", "+12125550123"),
    ("+1 212 555 0123 ext. 7", "+12125550123"), ("12345", None), ("+44 20 7946 0000", None), ("hello", None),
])
def test_nanp_e164(phone, e164):
    assert nanp_e164(phone) == e164


def test_unknown_state_code_is_refused():
    with pytest.raises(UnknownState):
        resolve_location("+18005550123", None, "ZZ")
