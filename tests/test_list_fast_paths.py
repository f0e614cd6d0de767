"""The contact import's caches and fast paths answer exactly as the slow paths they stand for."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent.location import UnknownState
from outbound.lists import placement
from outbound.lists.normalise import normalise_phone
from outbound.lists.placement import Placer, clean_state, clean_zip, place

_NUMBERS = st.sampled_from(["+12125550123", "+12085550100", "+12086250100", "+13055550100", "+18505550100",
                            "+18502220100", "+19075550100", "+17875550100", "+16715550100", "+18005550100",
                            "+16055550100", "+17015550100", "+19285550100", "+17755550100"])
_RAW_ZIPS = st.sampled_from(["", " ", "10001", "2134", "02134", "83201-1234", "97201 1234", "09001", "96801",
                             "99501", "00901", "99999", "SW1A 1AA", "abc", "1"])
_RAW_STATES = st.sampled_from(["", " ", "NY", "ny", "New York", "FLORIDA", "california", "ID", "or", "ZZ", "N/A",
                               "Washington D.C.", "PR", "GU", "AE"])


def _placed_without_memo(e164: str, raw_zip: str, raw_state: str):
    state = clean_state(raw_state)
    zip_code = clean_zip(raw_zip)
    return zip_code, state, place(e164, zip_code, state)


def _resolve_or_error(resolve, *args):
    try:
        return resolve(*args)
    except UnknownState:
        return UnknownState


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(_NUMBERS, _RAW_ZIPS, _RAW_STATES), min_size=1, max_size=60))
def test_one_placer_over_many_rows_answers_as_place_does_row_by_row(rows):
    placer = Placer()
    for row in rows:
        assert _resolve_or_error(placer.resolve, *row) == _resolve_or_error(_placed_without_memo, *row), row


def test_the_placer_answers_the_same_after_its_memos_are_dropped(monkeypatch):
    monkeypatch.setattr(placement, "_MEMO_LIMIT", 3)
    placer = Placer()
    rows = [(number, raw_zip, raw_state) for number in ("+12125550123", "+12085550100", "+19075550100")
            for raw_zip in ("", "83201", "2134") for raw_state in ("", "ny", "Idaho")] * 2
    for row in rows:
        assert placer.resolve(*row) == _placed_without_memo(*row), row


@pytest.mark.parametrize("raw_state", ["ZZ", "N/A", "Narnia"])
def test_an_unknown_state_is_refused_every_time_it_is_seen(raw_state):
    placer = Placer()
    for _ in range(3):
        with pytest.raises(UnknownState):
            placer.resolve("+12125550123", "10001", raw_state)
