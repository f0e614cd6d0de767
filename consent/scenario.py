"""The gate contract's JSON: scenarios in, decisions out (DESIGN.md, "The gate contract").

Validation is strict: unknown fields, wrong enums, missing required fields, instants that are
not ISO 8601 strings with a zone in the years 1900-2199, and booleans that are not JSON booleans
are errors that name the field by its path (`dnc.internal`, `consents[0].granted_at`). Nothing is
coerced: `"false"`, `0` and a UNIX number are refused, not guessed at. An unparsable phone is not
an error: the gate blocks it.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import (
    BaseModel, ConfigDict, Field, PlainValidator, StrictBool, StrictStr, ValidationError, WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from consent.location import UnknownState, known_states, resolve_location
from consent.types import (
    AttemptRequest, Channel, ConsentGrant, ConsentKind, Decision, Facts, LineType, Location, NationalDnc,
    PriorAttempt, Purpose, RevocationFact, VoiceKind,
)


_ZERO = timedelta(0)
FIRST_YEAR, LAST_YEAR = 1900, 2199
# ISO 8601 extended format with a zone: date, "T", hours and minutes, optional seconds and
# fraction, then "Z" or an offset. Checked before parsing because datetime.fromisoformat (and
# pydantic) also take a space, basic format, or a bare number of seconds.
_ISO_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(Z|[+-]\d{2}(?::?\d{2})?)?")
_EXAMPLE_INSTANT = "2026-07-15T16:00:00Z"


class ScenarioError(ValueError):
    """An invalid scenario; `str()` names the field and the problem."""


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, with the value when it is short: what an error
    says the scenario held instead."""
    kind = {bool: "boolean", type(None): "null", int: "number", float: "number", str: "string",
            list: "array", dict: "object"}.get(type(value), type(value).__name__)
    if kind in ("array", "object"):
        return f"an {kind}"
    if kind == "null":
        return "null"
    try:
        shown = json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        shown = repr(value)
    return f"{kind} {shown if len(shown) <= 40 else shown[:37] + '...'}"


def parse_instant(value: Any) -> datetime:
    """An ISO 8601 string with a zone in the years 1900-2199, as an aware datetime (UTC as the
    standard library's `timezone.utc`, which the gate compares fastest)."""
    if not isinstance(value, str):
        raise PydanticCustomError("instant_type", "expected an ISO 8601 date-time string with a zone "
                                  f"(e.g. {_EXAMPLE_INSTANT}), got {json_type(value)}")
    shape = _ISO_INSTANT.fullmatch(value)
    if shape is None:
        raise PydanticCustomError("instant_format", "expected an ISO 8601 date-time with a zone "
                                  f"(e.g. {_EXAMPLE_INSTANT}), got {json_type(value)}")
    if shape.group(1) is None:
        raise PydanticCustomError("instant_naive", f"needs a time zone (e.g. {_EXAMPLE_INSTANT}), "
                                  f"got {json_type(value)}")
    try:
        instant = datetime.fromisoformat(value)
    except ValueError as error:
        why = "its offset must be under 24 hours" if "offset" in str(error) else str(error)
        raise PydanticCustomError("instant_value", f"not a real date and time ({why}), got {json_type(value)}") from None
    if not FIRST_YEAR <= instant.year <= LAST_YEAR:
        raise PydanticCustomError("instant_range", f"year {instant.year} is outside {FIRST_YEAR}-{LAST_YEAR}, "
                                  f"got {json_type(value)}")
    return instant


# An instant of the contract: never a number, never without a zone, never coerced.
Instant = Annotated[datetime, PlainValidator(parse_instant),
                    WithJsonSchema({"type": "string", "format": "date-time"})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContactIn(_Strict):
    phone: StrictStr
    state: StrictStr | None = None
    zip: StrictStr | None = None
    line_type: LineType = LineType.UNKNOWN


class ConsentIn(_Strict):
    kind: ConsentKind
    channels: list[Channel] = Field(min_length=1)
    purposes: list[Purpose] = Field(min_length=1)
    granted_at: Instant
    expires_at: Instant | None = None
    evidence: StrictStr | None = None


class RevocationIn(_Strict):
    at: Instant
    channels: list[Channel] = Field(min_length=1)
    via: StrictStr | None = None


class NationalDncIn(_Strict):
    listed: StrictBool
    registered_on: StrictStr | None = None
    synced_at: Instant | None = None


class DncIn(_Strict):
    national: NationalDncIn | None = None
    state: list[StrictStr] = []
    internal: StrictBool = False
    litigator: StrictBool = False


class EbrIn(_Strict):
    last_transaction_at: Instant | None = None
    last_inquiry_at: Instant | None = None


class HistoryIn(_Strict):
    at: Instant
    channel: Channel


class ScenarioIn(_Strict):
    at: Instant
    channel: Channel
    purpose: Purpose
    voice: VoiceKind | None = None
    automated: StrictBool = True
    contact: ContactIn
    consents: list[ConsentIn] = []
    revocations: list[RevocationIn] = []
    dnc: DncIn = DncIn()
    ebr: EbrIn = EbrIn()
    history: list[HistoryIn] = []


def parse_scenario(raw: Any, location: Location | None = None) -> tuple[AttemptRequest, Facts, datetime]:
    """Validate a decoded JSON scenario and resolve its contact; raises ScenarioError. Given
    `location` (what a stored decision resolved, for replay), the contact is placed there
    rather than by phonenumbers and zipcodes again."""
    if not isinstance(raw, dict):
        raise ScenarioError(f"scenario: expected a JSON object, got {json_type(raw)}")
    try:
        scenario = ScenarioIn.model_validate(raw)
    except ValidationError as error:
        raise ScenarioError(_describe(error)) from None
    return _checked(scenario, location)


def _checked(scenario: ScenarioIn, location: Location | None = None) -> tuple[AttemptRequest, Facts, datetime]:
    if scenario.channel is Channel.VOICE and scenario.voice is None:
        raise ScenarioError("voice: required when channel is voice (live, prerecorded or artificial)")
    return _request(scenario, location), _facts(scenario), _utc(scenario.at)


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
        first = error.errors()[0]
        if first["type"] == "json_invalid":
            raise ScenarioError(_not_json(text, first["msg"])) from None
        raise ScenarioError(_describe(error)) from None
    return _checked(scenario)


def _not_json(text: str | bytes, message: str) -> str:
    if isinstance(text, bytes):
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as error:
            return f"not valid UTF-8 text: byte {error.start + 1} is {text[error.start:error.start + 1]!r}"
    return f"not valid JSON: {message.removeprefix('Invalid JSON: ')}"


def field_path(location: tuple[str | int, ...]) -> str:
    """A pydantic error location as the contract names fields: `consents[0].granted_at`."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "scenario"


# What each pydantic error type means, in the contract's words (the value held follows).
_EXPECTED = {
    "bool_type": "expected a JSON boolean (true or false)",
    "string_type": "expected a JSON string",
    "list_type": "expected a JSON array",
    "model_type": "expected a JSON object",
    "model_attributes_type": "expected a JSON object",
    "dict_type": "expected a JSON object",
}


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:5]:
        field = field_path(item["loc"])
        kind = item["type"]
        if kind == "extra_forbidden":
            problems.append(f"{field}: unknown field")
        elif kind == "missing":
            problems.append(f"{field}: required field is missing")
        elif kind in _EXPECTED:
            problems.append(f"{field}: {_EXPECTED[kind]}, got {json_type(item.get('input'))}")
        elif kind == "enum":
            problems.append(f"{field}: expected one of {item['ctx']['expected']}, got {json_type(item.get('input'))}")
        elif kind == "too_short":
            problems.append(f"{field}: needs at least one item")
        else:
            problems.append(f"{field}: {item['msg']}")
    return "; ".join(problems)


def _request(scenario: ScenarioIn, location: Location | None = None) -> AttemptRequest:
    contact = scenario.contact
    _check_state_code(contact.state, "contact.state")
    for index, code in enumerate(scenario.dnc.state):
        _check_state_code(code, f"dnc.state[{index}]")
    if location is None:
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


