"""The contact import's caches and fast paths answer exactly as the slow paths they stand for."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent.location import UnknownState
from outbound.lists import placement
from outbound.lists.importer import _AttributesJson
from outbound.lists.normalise import normalise_phone_reference, plain_nanp_e164
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


# --- phone numbers: the import's one-regex path ---------------------------------------------------

_LAYOUTS = ("{a}{b}{c}", "({a}) {b}-{c}", "{a}.{b}.{c}", "+1 {a} {b} {c}", "1-{a}-{b}-{c}", "1{a}{b}{c}",
            "+1{a}{b}{c}", "({a}){b}{c}", " {a} {b} {c} ", "+{a}{b}{c}", "{a} {b}-{c} x9", "{a}-{b}-{c} ext. 12",
            "{a}-{b}-{c};ext=3", "{a}-{b}-{c}#4", "+44 {a} {b} {c}", "011 44 {a}{b}{c}", "+49{a}{b}{c}",
            "{a}-{b}-O{c}", "1-800-FLOWERS", "{a}.{b}.{c}\t", "(({a})) {b}-{c}", "{a}--{b}-{c}", "+1 ({a}) {b}{c}",
            "１{a}{b}{c}", "{a}{b}{c}0", "{a}-{b}-")


@settings(max_examples=3000, deadline=None)
@given(digits=st.text(alphabet="0123456789", min_size=10, max_size=10), layout=st.sampled_from(_LAYOUTS))
def test_the_plain_path_gives_the_number_normalise_phone_gives_or_defers(digits, layout):
    raw = layout.format(a=digits[:3], b=digits[3:6], c=digits[6:])
    e164 = plain_nanp_e164(raw)
    assert e164 is None or (e164, None) == tuple(normalise_phone_reference(raw)), raw


@settings(max_examples=2000, deadline=None)
@given(raw=st.text(alphabet="0123456789 +-.()xXet#;:=/,ABCOo\u00a0\uff11", max_size=22))
def test_the_plain_path_never_accepts_what_phonenumbers_refuses(raw):
    e164 = plain_nanp_e164(raw)
    assert e164 is None or (e164, None) == tuple(normalise_phone_reference(raw)), raw


@pytest.mark.parametrize("raw,e164", [("(212) 555-0123", "+12125550123"), ("+1 212 555 0123", "+12125550123"),
                                      ("1-212-555-0123", "+12125550123"), (" 212.555.0123 ", "+12125550123")])
def test_the_plain_path_takes_the_common_layouts(raw, e164):
    assert plain_nanp_e164(raw) == e164


@pytest.mark.parametrize("raw", ["212-555-0123 x12", "212-555-O123", "+44 20 7946 0958", "+1 416 555 0123",
                                 "123-555-0123", "(555) 012-3456", "", "N/A"])
def test_the_plain_path_leaves_the_rest_to_phonenumbers(raw):
    assert plain_nanp_e164(raw) is None


# --- attributes: pre-encoded keys write what the JSON encoder writes for the dict -------------------

_ATTRIBUTE_NAMES = st.sampled_from(["Notes", "notes", "Notes", "line_type_given", "consent_kind", "column_7", "ü",
                                    'quo"te', "back\\slash", "tab\there", "😀"])
_CELLS = st.one_of(st.sampled_from(["", "  ", " vip ", "=HYPERLINK(\"x\")", "José", "\x00", "line\nbreak", "😀"]),
                   st.text(max_size=10))


@settings(max_examples=1000, deadline=None)
@given(names=st.lists(_ATTRIBUTE_NAMES, max_size=4), data=st.data(),
       line_type_given=st.one_of(st.none(), st.sampled_from(["fax", "Pager ", "ü"])),
       has_line_type=st.booleans())
def test_attribute_json_is_the_encoders_text_for_the_dict(names, data, line_type_given, has_line_type):
    cells = data.draw(st.lists(_CELLS, min_size=len(names), max_size=len(names)))
    columns = [(name, i) for i, name in enumerate(names)]
    encoder = _AttributesJson(columns, line_type_given=has_line_type)
    given_text = line_type_given if has_line_type else None
    expected = {}
    for name, i in columns:
        if value := cells[i].strip():
            expected[name] = value
    if given_text:
        expected["line_type_given"] = given_text
    text = encoder.encode(list(cells), given_text)
    assert text == (json.JSONEncoder(ensure_ascii=False).encode(expected) if expected else "{}")
    assert json.loads(text) == expected
