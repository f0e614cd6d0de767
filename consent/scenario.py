"""The gate contract's JSON: scenarios in, decisions out (DESIGN.md, "The gate contract").

Validation is strict: unknown fields, wrong enums, naive datetimes and missing required fields
are errors that name the field. An unparsable phone is not an error: the gate blocks it.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from consent.location import UnknownState, known_states, resolve_location
from consent.types import (
    AttemptRequest, Channel, ConsentGrant, ConsentKind, Decision, Facts, LineType, NationalDnc,
    PriorAttempt, Purpose, RevocationFact, VoiceKind,
)


_ZERO = timedelta(0)


class ScenarioError(ValueError):
    """An invalid scenario; `str()` names the field and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContactIn(_Strict):
    phone: str
    state: str | None = None
    zip: str | None = None
    line_type: LineType = LineType.UNKNOWN


class ConsentIn(_Strict):
    kind: ConsentKind
    channels: list[Channel] = Field(min_length=1)
    purposes: list[Purpose] = Field(min_length=1)
    granted_at: AwareDatetime
    expires_at: AwareDatetime | None = None
    evidence: str | None = None


class RevocationIn(_Strict):
    at: AwareDatetime
    channels: list[Channel] = Field(min_length=1)
    via: str | None = None


class NationalDncIn(_Strict):
    listed: bool
    registered_on: str | None = None
    synced_at: AwareDatetime | None = None


class DncIn(_Strict):
    national: NationalDncIn | None = None
    state: list[str] = []
    internal: bool = False
    litigator: bool = False


class EbrIn(_Strict):
    last_transaction_at: AwareDatetime | None = None
    last_inquiry_at: AwareDatetime | None = None


class HistoryIn(_Strict):
    at: AwareDatetime
    channel: Channel


class ScenarioIn(_Strict):
    at: AwareDatetime
    channel: Channel
    purpose: Purpose
    voice: VoiceKind | None = None
    automated: bool = True
    contact: ContactIn
    consents: list[ConsentIn] = []
    revocations: list[RevocationIn] = []
    dnc: DncIn = DncIn()
    ebr: EbrIn = EbrIn()
    history: list[HistoryIn] = []


def parse_scenario(raw: Any) -> tuple[AttemptRequest, Facts, datetime]:
    """Validate a decoded JSON scenario and resolve its contact; raises ScenarioError."""
    if not isinstance(raw, dict):
        raise ScenarioError(f"scenario: expected a JSON object, got {type(raw).__name__}")
    try:
        scenario = ScenarioIn.model_validate(raw)
    except ValidationError as error:
        raise ScenarioError(_describe(error)) from None
    return _checked(scenario)


def _checked(scenario: ScenarioIn) -> tuple[AttemptRequest, Facts, datetime]:
    if scenario.channel is Channel.VOICE and scenario.voice is None:
        raise ScenarioError("voice: required when channel is voice (live, prerecorded or artificial)")
    return _request(scenario), _facts(scenario), _utc(scenario.at)


def _utc(value: datetime | None) -> datetime | None:
    """The same instant and wall time under the standard library's UTC when the offset is zero.

    pydantic gives `Z` a tzinfo of its own, so every comparison and subtraction the gate makes
    calls back into it (about 20 times slower); the facts the dispatcher loads from the database
    already use `timezone.utc`. Other offsets are kept: EBR months count on the given wall time.
    """
    if value is not None and value.tzinfo is not timezone.utc and value.utcoffset() == _ZERO:
        return value.replace(tzinfo=timezone.utc)
    return value


def parse_scenario_text(text: str | bytes) -> tuple[AttemptRequest, Facts, datetime]:
    """Like parse_scenario, straight from JSON text (pydantic parses and validates in one pass)."""
    try:
        scenario = ScenarioIn.model_validate_json(text)
    except ValidationError as error:
        if error.errors()[0]["type"] == "json_invalid":
            raise ScenarioError(f"not valid JSON: {error.errors()[0]['msg']}") from None
        if error.errors()[0]["type"] == "model_type":
            raise ScenarioError("scenario: expected a JSON object") from None
        raise ScenarioError(_describe(error)) from None
    return _checked(scenario)


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:5]:
        field = ".".join(str(part) for part in item["loc"]) or "scenario"
        if item["type"] == "extra_forbidden":
            problems.append(f"{field}: unknown field")
        elif item["type"] == "missing":
            problems.append(f"{field}: required field is missing")
        elif item["type"] == "timezone_aware":
            problems.append(f"{field}: needs a time zone (e.g. 2026-07-15T16:00:00Z)")
        else:
            problems.append(f"{field}: {item['msg']}")
    return "; ".join(problems)


def _request(scenario: ScenarioIn) -> AttemptRequest:
    contact = scenario.contact
    _check_state_code(contact.state, "contact.state")
    for index, code in enumerate(scenario.dnc.state):
        _check_state_code(code, f"dnc.state.{index}")
    try:
        location = resolve_location(contact.phone, contact.zip, contact.state)
    except UnknownState as error:
        raise ScenarioError(f"contact.state: {error}") from None
    voice = scenario.voice if scenario.channel is Channel.VOICE else None
    return AttemptRequest(channel=scenario.channel, purpose=scenario.purpose, voice=voice,
                          automated=scenario.automated, line_type=contact.line_type,
                          location=location, phone=contact.phone, zip=contact.zip, state=contact.state)


def _check_state_code(code: str | None, field: str) -> None:
    if code is not None and code.upper() not in known_states():
        raise ScenarioError(f"{field}: unknown state code {code!r}: use a two-letter USPS code such as NY")


def _facts(scenario: ScenarioIn) -> Facts:
    dnc, ebr = scenario.dnc, scenario.ebr
    national = None
    if dnc.national is not None:
        national = NationalDnc(dnc.national.listed, dnc.national.registered_on, _utc(dnc.national.synced_at))
    return Facts(
        consents=tuple(ConsentGrant(c.kind, frozenset(c.channels), frozenset(c.purposes), _utc(c.granted_at),
                                    _utc(c.expires_at), c.evidence) for c in scenario.consents),
        revocations=tuple(RevocationFact(_utc(r.at), frozenset(r.channels), r.via) for r in scenario.revocations),
        national_dnc=national,
        state_dnc=tuple(sorted({code.upper() for code in dnc.state})),
        internal_dnc=dnc.internal, litigator=dnc.litigator,
        last_transaction_at=_utc(ebr.last_transaction_at), last_inquiry_at=_utc(ebr.last_inquiry_at),
        history=tuple(PriorAttempt(_utc(h.at), h.channel) for h in scenario.history))


def scenario_to_dict(request: AttemptRequest, facts: Facts, at: datetime) -> dict[str, Any]:
    """The scenario a decision was made from, in contract form: what a stored decision replays."""
    national = facts.national_dnc
    return {
        "at": iso_utc(at), "channel": request.channel.value, "purpose": request.purpose.value,
        "voice": request.voice.value if request.voice else None, "automated": request.automated,
        "contact": {"phone": request.phone, "state": request.state, "zip": request.zip,
                    "line_type": request.line_type.value},
        "consents": [{"kind": c.kind.value, "channels": sorted(c.channels), "purposes": sorted(c.purposes),
                      "granted_at": iso_utc(c.granted_at), "expires_at": iso_utc(c.expires_at),
                      "evidence": c.evidence} for c in facts.consents],
        "revocations": [{"at": iso_utc(r.at), "channels": sorted(r.channels), "via": r.via}
                        for r in facts.revocations],
        "dnc": {"national": None if national is None else {
                    "listed": national.listed, "registered_on": national.registered_on,
                    "synced_at": iso_utc(national.synced_at)},
                "state": list(facts.state_dnc), "internal": facts.internal_dnc, "litigator": facts.litigator},
        "ebr": {"last_transaction_at": iso_utc(facts.last_transaction_at),
                "last_inquiry_at": iso_utc(facts.last_inquiry_at)},
        "history": [{"at": iso_utc(h.at), "channel": h.channel.value} for h in facts.history],
    }


def iso_utc(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def decision_to_dict(decision: Decision) -> dict[str, Any]:
    """The decision exactly as the contract shows it, keys in contract order."""
    return {
        "verdict": decision.verdict.value,
        "reasons": [{"code": r.code, "rule": r.rule, "detail": r.detail} for r in decision.reasons],
        "next_allowed_at": iso_utc(decision.next_allowed_at),
        "timezones": list(decision.timezones),
        "states": list(decision.states),
        "rules_version": decision.rules_version,
    }


def decision_json(decision: Decision) -> str:
    return json.dumps(decision_to_dict(decision), ensure_ascii=False, separators=(",", ":"))


