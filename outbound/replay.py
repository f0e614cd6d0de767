"""Replay: re-derive a stored decision from its stored scenario and the rule pack it named.

A decision stored with the dates it resolved (consent.snapshot) is re-derived from those dates
and under the version it names, so an upgrade of the `holidays` library, or of the code that
reads effective dates, does not change it; one stored before then is derived again as before.
Likewise a decision stored with its location (decisions.location) is placed there, whatever
phonenumbers and zipcodes now say; one stored without it is placed again."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from consent.gate import evaluate
from consent.rules import canonical_json
from consent.scenario import ScenarioError, decision_to_dict, parse_scenario
from consent.snapshot import entries_differ, location_from_snapshot, pack_from_snapshot, years_of_stored
from consent.types import Location
from outbound.db import ensure_schema, get_engine, session_scope
from outbound.decisions import load_decision


class ReplayNotFound(LookupError):
    """No stored decision has that id."""


@dataclass(frozen=True)
class ReplayResult:
    decision_id: str
    decided_at: str
    rules_version: str
    identical: bool
    stored: str
    replayed: str
    difference: str

    def to_dict(self) -> dict:
        return asdict(self)


def replay_decision(decision_id: str, engine=None) -> ReplayResult:
    engine = engine or get_engine()
    ensure_schema(engine)
    with session_scope(engine) as session:
        found = load_decision(session, decision_id)
        if found is None:
            raise ReplayNotFound(f"no stored decision with id {decision_id!r}")
        row, pack_json = found
        return replay_row(row.id, row.decided_at.isoformat(), row.scenario, row.decision, pack_json,
                          location=row.location)


def replay_row(decision_id: str, decided_at: str, scenario: str, stored: str, pack_json: str,
               location: str | None = None) -> ReplayResult:
    """Re-derive one stored decision; `location` is the one it stored (decisions.location), and
    without it (decisions stored before it was kept) the contact is placed again."""
    pack = pack_from_snapshot(pack_json)
    raw = json.loads(scenario)
    try:
        request, facts, at = parse_scenario(raw, _stored_location(location))
        replayed = canonical_json(decision_to_dict(evaluate(request, facts, pack, at)))
    except ScenarioError as error:
        replayed = canonical_json({"error": str(error)})
    # Entries the code now finds in force, unlike those recorded, would make a same-bytes replay
    # a coincidence: say so.
    entries = entries_differ(pack, years_of_stored(raw, json.loads(stored))) if pack.resolved_entries else []
    difference = "; ".join(part for part in (_difference(json.loads(stored), json.loads(replayed)), *entries) if part)
    return ReplayResult(decision_id=decision_id, decided_at=decided_at, rules_version=pack.version,
                        identical=replayed == stored and not entries, stored=stored, replayed=replayed,
                        difference=difference)


def _stored_location(text: str | None) -> Location | None:
    if text is None:
        return None
    try:
        return location_from_snapshot(json.loads(text))
    except (ValueError, KeyError, TypeError) as error:
        raise ScenarioError(f"stored location: unreadable ({error})") from None


def _difference(stored: dict, replayed: dict) -> str:
    changed = [key for key in sorted(set(stored) | set(replayed)) if stored.get(key) != replayed.get(key)]
    if not changed:
        return ""
    return "; ".join(f"{key}: stored {stored.get(key)!r}, now {replayed.get(key)!r}" for key in changed)
