"""Stored gate decisions: the inputs, the result and the rule pack, so any one can be replayed.

A decision is stored with the canonical JSON of the scenario it was derived from and of the
decision itself, and with a snapshot of the rule pack under its version, in the same transaction
as its audit event: a decision without its audit event, or the reverse, can not be committed.

Beside the pack, under `VERSION@YEAR`, go the dates it resolved for each calendar year a
decision touched (holidays, entries in force: consent.snapshot), once per version and year, so
a replay after a `holidays` or code upgrade still reads the dates the decision was made on.

Each decision also keeps the location its contact was placed at (`decisions.location`: validity,
the number's zones before overrides, the address's zones, states, region), so a replay after a
`phonenumbers` or `zipcodes` upgrade places it where the decision did.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import phonenumbers
from sqlalchemy import insert, select
from sqlmodel import Session

from consent.rules import RulePack, RulePackError
from consent.location import UnknownState, resolve_location
from consent.snapshot import location_snapshot, resolved_year, snapshot_json, years_of_stored
from consent.types import Location
from outbound import audit
from outbound.audit import canonical_json
from outbound.db import insert_ignoring_duplicates
from outbound.models import Decision, RulePackSnapshot

DECISION_ACTION = "gate.decision"
_CHECKED_PACKS = "outbound.decisions.checked_packs"
_CHECKED_YEARS = "outbound.decisions.checked_years"
VERDICTS = ("allow", "defer", "block")


class RulePackConflict(RuntimeError):
    """Two different rule packs claim the same version: replay could not tell which one held."""


def store_decision(session: Session, *, scenario: dict, decision: dict, rules_version: str,
                   rule_pack_json: str, attempt_id: int | None, actor: str,
                   at: datetime, location: Location | None = None) -> Decision:
    """Store one decision (flushed, not committed) with its audit event; `at` is the instant
    it was made, `location` where its contact was placed (None: resolved from the scenario now).
    Raises RulePackConflict if `rules_version` is on file with another pack."""
    _check_verdict(decision, rules_version)
    ensure_rule_pack(session, rules_version, rule_pack_json, at)
    ensure_resolved_years(session, rules_version, rule_pack_json, _stored_years(scenario, decision), at)
    phone = subject_phone(scenario)
    row = Decision(id=uuid.uuid4().hex, attempt_id=attempt_id, phone=phone,
                   verdict=str(decision["verdict"]), rules_version=rules_version,
                   scenario=canonical_json(scenario), decision=canonical_json(decision),
                   location=location_json(scenario, location), decided_at=at, created_at=at)
    session.add(row)            # flushed with its audit event by audit.append
    audit.append(session, actor=actor, action=DECISION_ACTION, subject=row.id, at=at,
                 payload=_audit_payload(row.verdict, decision, rules_version, phone))
    return row


@dataclass(frozen=True)
class NewDecision:
    """One decision for `store_decisions`."""

    scenario: dict
    decision: dict
    attempt_id: int | None
    location: Location | None = None     # where the contact was placed; None: resolved from the scenario


def store_decisions(session: Session, items: list[NewDecision], *, rules_version: str, rule_pack_json: str,
                    actor: str, at: datetime) -> list[str]:
    """`store_decision` for a batch made under one rule pack at one instant: one multi-row
    INSERT for the decisions and one for their audit events. Returns the decision ids in order."""
    rows, events = [], []
    for item in items:
        _check_verdict(item.decision, rules_version)
        phone = subject_phone(item.scenario)
        row = {"id": uuid.uuid4().hex, "attempt_id": item.attempt_id, "phone": phone,
               "verdict": str(item.decision["verdict"]), "rules_version": rules_version,
               "scenario": canonical_json(item.scenario), "decision": canonical_json(item.decision),
               "location": location_json(item.scenario, item.location), "decided_at": at, "created_at": at}
        rows.append(row)
        events.append(audit.NewEvent(actor=actor, action=DECISION_ACTION, subject=row["id"], at=at,
                                     payload=_audit_payload(row["verdict"], item.decision, rules_version, phone)))
    if not rows:
        return []
    ensure_rule_pack(session, rules_version, rule_pack_json, at)
    years = {year for item in items for year in _stored_years(item.scenario, item.decision)}
    ensure_resolved_years(session, rules_version, rule_pack_json, sorted(years), at)
    session.execute(insert(Decision.__table__), rows)
    audit.append_many(session, events)
    return [row["id"] for row in rows]


def location_json(scenario: dict, location: Location | None) -> str | None:
    """The stored form of where a decision placed its contact: `location`, else the scenario's
    contact resolved now (the libraries the decision was just made with). None when the
    scenario has no contact to place (a test's stand-in, an invalid state)."""
    if location is None:
        contact = scenario.get("contact") if isinstance(scenario, dict) else None
        if not isinstance(contact, dict) or not isinstance(contact.get("phone"), str):
            return None
        try:
            location = resolve_location(contact["phone"], contact.get("zip"), contact.get("state"))
        except (UnknownState, TypeError, AttributeError):
            return None
    return canonical_json(location_snapshot(location))


def _check_verdict(decision: dict, rules_version: str) -> None:
    if decision.get("verdict") not in VERDICTS:
        raise ValueError(f"decision verdict must be one of {', '.join(VERDICTS)}, "
                         f"not {decision.get('verdict')!r}")
    if decision.get("rules_version", rules_version) != rules_version:
        raise ValueError(f"decision names rules_version {decision['rules_version']!r} "
                         f"but was stored under {rules_version!r}")


def _audit_payload(verdict: str, decision: dict, rules_version: str, phone: str) -> dict:
    return {
        "verdict": verdict,
        "reasons": [reason["code"] for reason in decision.get("reasons", ())],
        "rules_version": rules_version,
        "phone": phone,
    }


def ensure_rule_pack(session: Session, version: str, pack_json: str, at: datetime) -> None:
    """Snapshot the pack under `version` unless it is already there (racing writers are fine);
    a version already stored with different content is refused."""
    checked = session.info.setdefault(_CHECKED_PACKS, {})
    transaction = session.get_transaction()
    if transaction is not None and checked.get(version) == (transaction, pack_json):
        return                  # already checked in this transaction (a dispatch batch)
    inserted = insert_ignoring_duplicates(session, RulePackSnapshot.__table__,
                                          {"version": version, "pack": pack_json, "created_at": at})
    if inserted:
        checked[version] = (session.get_transaction(), pack_json)
        return
    stored = session.execute(select(RulePackSnapshot.pack)
                             .where(RulePackSnapshot.version == version)).scalar_one()
    if stored != pack_json:
        raise RulePackConflict(f"rule pack version {version!r} is already stored with different "
                               "content; give the changed pack a new version")
    checked[version] = (session.get_transaction(), pack_json)


def ensure_resolved_years(session: Session, version: str, pack_json: str, years: Iterable[int],
                          at: datetime) -> None:
    """Keep the dates `version` resolves in each of `years` beside its pack (once per version
    and year; racing writers are fine). The same version and year resolved to other dates (a
    library changed under an unchanged version) is refused: replay could not tell which held."""
    checked = session.info.setdefault(_CHECKED_YEARS, {})
    transaction = session.get_transaction()
    for year in years:
        key = resolved_key(version, year)
        if checked.get(key) is transaction:
            continue
        resolved = _resolved_year_json(pack_json, year)
        if resolved is None:
            return              # not a pack the gate can load (a test's stand-in): nothing to resolve
        inserted = insert_ignoring_duplicates(session, RulePackSnapshot.__table__,
                                              {"version": key, "pack": resolved, "created_at": at})
        if not inserted:
            stored = session.execute(select(RulePackSnapshot.pack).where(RulePackSnapshot.version == key)).scalar_one()
            if stored != resolved:
                raise RulePackConflict(f"rule pack version {version!r} already resolved the dates of {year} "
                                       "differently (was a library upgraded without a new version?)")
        checked[key] = transaction


def _stored_years(scenario: dict, decision: dict) -> range:
    try:
        return years_of_stored(scenario, decision)
    except (ValueError, KeyError, TypeError):
        return range(0)         # no instant to date it by: nothing resolved, replay derives as before


def resolved_key(version: str, year: int) -> str:
    """Where the dates `version` resolved in `year` are kept in the rule pack table."""
    return f"{version}@{year}"


@lru_cache(maxsize=64)
def _resolved_year_json(pack_json: str, year: int) -> str | None:
    pack = _loaded_pack(pack_json)
    return None if pack is None else canonical_json(resolved_year(pack, year))


@lru_cache(maxsize=4)
def _loaded_pack(pack_json: str) -> RulePack | None:
    try:
        return RulePack.from_json(pack_json)
    except (RulePackError, KeyError, TypeError, ValueError):
        return None


def load_decision(session: Session, decision_id: str) -> tuple[Decision, str] | None:
    """The stored decision and the JSON of the rule pack it was made under, or None: a snapshot
    with the dates it resolved (consent.snapshot) when they were stored, else the plain pack
    (decisions stored before resolved dates were kept)."""
    statement = (select(Decision, RulePackSnapshot.pack)
                 .join(RulePackSnapshot, RulePackSnapshot.version == Decision.rules_version)
                 .where(Decision.id == decision_id))
    found = session.execute(statement).one_or_none()
    if found is None:
        return None
    row, pack_json = found[0], found[1]
    years = _stored_years(json.loads(row.scenario), json.loads(row.decision))
    keys = {resolved_key(row.rules_version, year): year for year in years}
    resolved = {keys[version]: text for version, text in session.execute(
        select(RulePackSnapshot.version, RulePackSnapshot.pack).where(RulePackSnapshot.version.in_(keys)))}
    if not resolved:
        return row, pack_json
    return row, snapshot_json(pack_json, row.rules_version, resolved)


def subject_phone(scenario: dict) -> str:
    """The contact's number in E.164 when it is a valid number, else as given: an invalid
    number is decided (blocked) too, and its record must still say what was asked."""
    raw = str((scenario.get("contact") or {}).get("phone") or "")
    try:
        number = phonenumbers.parse(raw, "US")
    except phonenumbers.NumberParseException:
        return raw
    if not phonenumbers.is_valid_number(number):
        return raw
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
