"""The gate's memos never change an answer.

The gate keeps derived values per rule pack (windows per zone and local date, reasons per UTC
minute, state flags, allowed spans, allow decisions). Each is a pure function of its key, so a
decision must be byte for byte the same whatever the pack has seen before.
"""
from __future__ import annotations

import pytest

from consent.gate import evaluate
from consent.rules import RulePack, load_pack
from consent.scenario import decision_json, parse_scenario

PACK = load_pack()


def fresh_pack() -> RulePack:
    return RulePack.from_json(PACK.to_json())


def automated_call(phone: str, at: str) -> dict:
    return {"at": at, "channel": "voice", "purpose": "telemarketing", "voice": "live", "automated": True,
            "contact": {"phone": phone, "line_type": "landline"},
            "consents": [{"kind": "written", "channels": ["voice"], "purposes": ["telemarketing"],
                          "granted_at": "2020-01-01T00:00:00Z"}],
            "dnc": {"national": {"listed": False, "synced_at": at[:8] + "01T00:00:00Z"}}}


def decision_bytes(raw: dict, pack: RulePack) -> str:
    request, facts, at = parse_scenario(raw)
    return decision_json(evaluate(request, facts, pack, at))


@pytest.mark.parametrize("phone,earlier,later,expected", [
    # Same rule, same local HH:MM, another date: the detail names the later date's own holiday
    # date and weekday, not the one decided first.
    ("+18015550123", "2026-01-01T18:00:00Z", "2027-01-01T18:00:00Z", "2027-01-01 is New Year's Day"),
    ("+16055550123", "2026-07-18T18:00:00Z", "2026-07-19T18:00:00Z", "Sunday 12:00 MDT: no calls on Sundays"),
])
def test_a_defer_reason_does_not_depend_on_what_was_decided_before(phone, earlier, later, expected):
    alone = decision_bytes(automated_call(phone, later), fresh_pack())
    pack = fresh_pack()
    decision_bytes(automated_call(phone, earlier), pack)
    assert decision_bytes(automated_call(phone, later), pack) == alone
    assert expected in alone
