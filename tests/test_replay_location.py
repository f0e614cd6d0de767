"""Replay survives a phonenumbers or zipcodes upgrade too.

A stored decision keeps the location its contact was placed at (validity, the number's zones
before overrides, the address's zones, states, region), and replay reads it back instead of
placing the number again, so a library that now puts the number elsewhere does not change the
replay. The rule pack's zone overrides still apply from the stored parts (689 stays Eastern).
Decisions stored without a location replay as before: placed again.
"""
from __future__ import annotations

import json

import pytest
from sqlalchemy import update
from sqlmodel import Session

from consent import location as location_module
from consent import scenario as scenario_module
from consent.gate import evaluate
from consent.rules import load_pack
from consent.scenario import decision_to_dict, parse_scenario
from consent.snapshot import location_from_snapshot
from consent.types import Location
from outbound.db import session_scope
from outbound.decisions import NewDecision, store_decision, store_decisions
from outbound.models import Decision
from outbound.replay import replay_decision

PACK = load_pack()


def scenario(phone: str, at: str = "2026-07-15T16:00:00Z", **contact) -> dict:
    """Informational live call by hand: only where and when the contact is decide it."""
    return {"at": at, "channel": "voice", "purpose": "informational", "voice": "live", "automated": False,
            "contact": {"phone": phone, "state": None, "zip": None, "line_type": "landline", **contact},
            "consents": [], "revocations": [],
            "dnc": {"national": None, "state": [], "internal": False, "litigator": False},
            "ebr": {"last_transaction_at": None, "last_inquiry_at": None}, "history": []}


def store(engine, raw: dict, *, batch: bool = False) -> str:
    request, facts, at = parse_scenario(raw)
    decision = decision_to_dict(evaluate(request, facts, PACK, at))
    with session_scope(engine) as session:
        if batch:      # the dispatcher's path
            [decision_id] = store_decisions(session, [NewDecision(scenario=raw, decision=decision, attempt_id=None)],
                                            rules_version=PACK.version, rule_pack_json=PACK.to_json(),
                                            actor="test", at=at)
            return decision_id
        return store_decision(session, scenario=raw, decision=decision, rules_version=PACK.version,
                              rule_pack_json=PACK.to_json(), attempt_id=None, actor="test", at=at).id


HONOLULU = ("Pacific/Honolulu",)      # 06:00 there at 16:00Z: a call would wait


def upgrade_location_libraries(monkeypatch) -> None:
    """What a phonenumbers / zipcodes upgrade could do: place every number in Honolulu."""
    def moved(phone, zip_code=None, state=None, zone_overrides=None):
        e164 = location_module.nanp_e164(phone)
        return Location(e164=e164, timezones=HONOLULU, states=("HI",), region="US")

    monkeypatch.setattr(scenario_module, "resolve_location", moved)
    monkeypatch.setattr(location_module, "_candidate_zones", lambda *args: HONOLULU)
    monkeypatch.setattr(location_module, "library_prefix_facts", lambda prefix: (HONOLULU, "HI", "US"))
    location_module.zones_from_parts.cache_clear()


@pytest.mark.parametrize("phone,zones", [
    ("(212) 555-0123", ["America/New_York"]),
    ("(689) 555-0123", ["America/New_York"]),       # an overridden prefix: phonenumbers says Chicago
    ("(928) 555-0123", ["America/Denver", "America/Phoenix"]),
])
@pytest.mark.parametrize("batch", [False, True])
def test_a_location_library_upgrade_leaves_a_stored_decision_identical(engine, monkeypatch, phone, zones, batch):
    decision_id = store(engine, scenario(phone), batch=batch)
    before = replay_decision(decision_id, engine)
    assert before.identical and json.loads(before.stored)["timezones"] == zones

    upgrade_location_libraries(monkeypatch)
    assert parse_scenario(scenario(phone))[0].location.timezones == HONOLULU      # the lookup did move

    after = replay_decision(decision_id, engine)
    assert after.identical, after.difference
    assert after.replayed == before.replayed


def test_the_stored_location_holds_what_resolve_location_gave(engine):
    decision_id = store(engine, scenario("(689) 555-0123", zip="32801", state="FL"))
    with Session(engine) as session:
        stored = location_from_snapshot(json.loads(session.get(Decision, decision_id).location))
    assert stored == location_module.resolve_location("(689) 555-0123", "32801", "FL")
    assert stored.number_zones == ("America/Chicago",)          # phonenumbers', before the override
    assert (stored.timezones, stored.states, stored.region) == (("America/New_York",), ("FL",), "US")


def test_a_decision_stored_without_its_location_is_placed_again(engine, monkeypatch):
    decision_id = store(engine, scenario("(212) 555-0123"))
    with session_scope(engine) as session:             # as decisions stored before migration 0009
        session.execute(update(Decision).where(Decision.id == decision_id).values(location=None))

    upgrade_location_libraries(monkeypatch)
    after = replay_decision(decision_id, engine)
    assert not after.identical and "Pacific/Honolulu" in after.replayed


def test_an_invalid_number_keeps_its_invalid_location(engine, monkeypatch):
    decision_id = store(engine, scenario("555-0123"))
    upgrade_location_libraries(monkeypatch)
    monkeypatch.setattr(location_module, "nanp_e164", lambda phone: "+12125550123")   # now "valid"
    after = replay_decision(decision_id, engine)
    assert after.identical and '"invalid_number"' in after.replayed
