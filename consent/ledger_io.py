"""Reading consent-ledger files: consent records, revocations and business relationships.

A file is CSV (header row) or JSON (an array of objects, one object, or JSON Lines). A file may mix
the three record types through a `type` column or field; it defaults to `consent`. Every row is
validated on its own: a bad row is reported with its line and a precise reason and never stops
the good rows from loading. The pydantic models here are also the bodies of the API routes.
"""
from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError,
    model_validator,
)

from consent.location import parse_nanp, to_e164
from consent.types import Channel, ConsentKind, Purpose


class RevocationVia(StrEnum):
    """How an opt-out reached us (FCC 24-24 makes each of these a reasonable means)."""

    SMS_STOP = "sms_stop"
    KEYPRESS = "keypress"
    SPOKEN = "spoken"
    EMAIL = "email"
    AGENT = "agent"
    API = "api"


RECORD_TYPES = ("consent", "revocation", "business_relationship")
EVIDENCE_FIELDS = ("source", "page_url", "ip", "user_agent", "disclosure_text", "disclosure_sha256",
                   "certificate_id")
LIST_FIELDS = ("channels", "purposes")
_LIST_SEPARATORS = re.compile(r"[;,\s]+")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


# --- field types ------------------------------------------------------------------------------

# What migration 0005 gave consents recorded before a consent named its seller (when the install
# had more or fewer than one campaign): it matches no campaign, so they count for nothing.
UNKNOWN_SELLER = "unknown"
_SPACES = re.compile(r"\s+")


def seller_key(name: str | None) -> str | None:
    """What two seller names are compared by: case and runs of spaces do not matter. None for a
    missing name or the placeholder, which match no seller at all (fail closed)."""
    if name is None:
        return None
    key = _SPACES.sub(" ", name).strip().casefold()
    return None if not key or key == UNKNOWN_SELLER else key


def same_seller(first: str | None, second: str | None) -> bool:
    key = seller_key(first)
    return key is not None and key == seller_key(second)


def _e164(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"give the phone as a string, not {type(value).__name__}")
    e164 = e164_or_none(value.strip())
    if e164 is None:
        raise ValueError(f"not a valid NANP phone number: {value!r}")
    return e164


@lru_cache(maxsize=65536)
def e164_or_none(phone: str) -> str | None:
    """The E.164 form of a valid NANP number, else None."""
    # Parsing dominates the cost of a row, and one file often names a phone several times
    # (its consent, its revocation, its business relationship).
    number = parse_nanp(phone)
    return None if number is None else to_e164(number)


def _utc_instant(value: Any) -> datetime:
    """ISO 8601 with a zone only: a bare number or a naive time would guess at the zone."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not an ISO 8601 instant: {value!r} (example: 2026-01-01T00:00:00Z)") from None
    elif not isinstance(value, datetime):
        raise ValueError(f"give an ISO 8601 instant as a string, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value.isoformat()} has no time zone: add Z or an offset such as -05:00")
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is out of range in UTC") from None


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError(f"not an IPv4 or IPv6 address: {value!r}") from None


def _sha256_hex(value: str) -> str:
    value = value.strip().lower()
    if not _SHA256_HEX.fullmatch(value):
        raise ValueError("a sha256 is 64 hexadecimal characters")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _nonempty_set(value: frozenset) -> frozenset:
    if not value:
        raise ValueError("name at least one")
    return value


Phone = Annotated[str, BeforeValidator(_e164)]
Instant = Annotated[datetime, BeforeValidator(_utc_instant)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
# The disclosure is kept byte for byte (it is what the consumer saw), so it is never stripped.
Disclosure = Annotated[str, Field(max_length=20000), AfterValidator(_not_blank)]
IpAddress = Annotated[str, Field(max_length=100), AfterValidator(_ip_address)]
Sha256 = Annotated[str, AfterValidator(_sha256_hex)]
Channels = Annotated[frozenset[Channel], AfterValidator(_nonempty_set)]
Purposes = Annotated[frozenset[Purpose], AfterValidator(_nonempty_set)]


def _unstorable_text(value: Any, location: str = "") -> str | None:
    """Where a string holds what no database column can store: NUL, or a lone surrogate (an
    undecodable byte, or a `\\ud800` escape in JSON)."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{location or 'text'}: holds a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{location or 'text'}: not valid UTF-8 text"
    elif isinstance(value, dict):
        for key, item in value.items():
            found = _unstorable_text(key, location) or _unstorable_text(item, _join(location, str(key)))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _unstorable_text(item, f"{location}[{index}]")
            if found:
                return found
    return None


def _join(location: str, name: str) -> str:
    return f"{location}.{name}" if location else name


class _Strict(BaseModel):
    # A misspelt column (say `expiry` for `expires_at`) must not be dropped silently.
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        problem = _unstorable_text(data)
        if problem:
            raise ValueError(problem)
        return data


class EvidenceIn(_Strict):
    source: Text | None = None
    page_url: Url | None = None
    ip: IpAddress | None = None
    user_agent: Text | None = None
    disclosure_text: Disclosure | None = None
    disclosure_sha256: Sha256 | None = None
    certificate_id: Text | None = None

    @model_validator(mode="after")
    def _hash_the_disclosure(self) -> EvidenceIn:
        if self.disclosure_text is None:
            return self
        digest = hashlib.sha256(self.disclosure_text.encode("utf-8")).hexdigest()
        if self.disclosure_sha256 is None:
            object.__setattr__(self, "disclosure_sha256", digest)
        elif self.disclosure_sha256 != digest:
            raise ValueError(f"disclosure_sha256 does not match disclosure_text (its sha256 is {digest})")
        return self

    def as_stored(self) -> dict[str, str]:
        return self.model_dump(exclude_none=True)


def _a_real_seller(value: str) -> str:
    if seller_key(value) is None:
        raise ValueError(f"{value!r} is the placeholder for records stored before they named their "
                         f"seller; name the seller that obtained this consent or has this business "
                         f"relationship")
    return value


# A consent counts only for campaigns of the seller that obtained it (DESIGN.md, Invariants), and
# a business relationship is with one seller (47 CFR 64.1200(f)(5)).
Seller = Annotated[Text, AfterValidator(_a_real_seller)]


class ConsentIn(_Strict):
    type: Literal["consent"] = "consent"
    phone: Phone
    kind: ConsentKind
    channels: Channels
    purposes: Purposes
    seller: Seller = Field(description="the seller that obtained the consent: it counts only for "
                                       "campaigns of that seller")
    brand: Text | None = None
    granted_at: Instant
    expires_at: Instant | None = None
    evidence: EvidenceIn = Field(default_factory=EvidenceIn)

    @model_validator(mode="before")
    @classmethod
    def _gather_evidence(cls, data: Any) -> Any:
        """Evidence may come flat (CSV columns, simple JSON) or nested under `evidence`."""
        if not isinstance(data, dict):
            return data
        flat = {name: data[name] for name in EVIDENCE_FIELDS if name in data}
        if not flat:
            return data
        nested = data.get("evidence", {})
        if not isinstance(nested, dict):
            return data                      # let the field report its own type error
        both = sorted(set(flat) & set(nested))
        if both:
            raise ValueError(f"{both[0]} is given both flat and under evidence: give it once")
        rest = {name: value for name, value in data.items() if name not in flat}
        return {**rest, "evidence": {**nested, **flat}}

    @model_validator(mode="after")
    def _written_has_evidence(self) -> ConsentIn:
        # Prior express written consent must be provable (47 CFR 64.1200(f)(9)); a record
        # without any proof would let calls through that nobody could defend.
        if self.kind is ConsentKind.WRITTEN and not self.evidence.as_stored():
            raise ValueError(f"evidence: written consent needs its evidence; give at least one of "
                             f"{', '.join(EVIDENCE_FIELDS)} (a certificate_id or the disclosure_text is "
                             f"the strongest proof)")
        return self

    @model_validator(mode="after")
    def _expiry_after_grant(self) -> ConsentIn:
        if self.expires_at is not None and self.expires_at <= self.granted_at:
            raise ValueError(f"expires_at {self.expires_at.isoformat()} is not after granted_at "
                             f"{self.granted_at.isoformat()}")
        return self


class RevocationIn(_Strict):
    type: Literal["revocation"] = "revocation"
    phone: Phone
    # Revoke-all is the conservative reading of FCC 24-24 while its scope is unsettled, so a
    # revocation that names no channel covers every channel.
    channels: Channels = frozenset(Channel)
    via: RevocationVia
    received_at: Instant
    note: Text | None = None


class BusinessRelationshipIn(_Strict):
    type: Literal["business_relationship"] = "business_relationship"
    phone: Phone
    last_transaction_at: Instant | None = None
    last_inquiry_at: Instant | None = None
    seller: Seller = Field(description="the seller the customer transacted with or asked: the "
                                       "relationship exempts only that seller's campaigns from the "
                                       "national DNC list")
    note: Text | None = None

    @model_validator(mode="after")
    def _some_date(self) -> BusinessRelationshipIn:
        if self.last_transaction_at is None and self.last_inquiry_at is None:
            raise ValueError("give last_transaction_at, last_inquiry_at or both")
        return self


RecordIn = Union[ConsentIn, RevocationIn, BusinessRelationshipIn]
_MODEL_BY_TYPE: dict[str, type[_Strict]] = {
    "consent": ConsentIn, "revocation": RevocationIn, "business_relationship": BusinessRelationshipIn,
}


# --- results ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LoadedRow:
    line: int                        # CSV/JSON Lines: the line it starts on; JSON array: likewise
    record: RecordIn


@dataclass(frozen=True, slots=True)
class RowError:
    line: int                        # 0 when the reason concerns the whole file
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "reason": self.reason}


@dataclass(slots=True)
class LoadedFile:
    rows: list[LoadedRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    def reject(self, line: int, reason: str) -> None:
        self.errors.append(RowError(line, reason))


# --- validation of one row --------------------------------------------------------------------

def describe_validation_error(error: ValidationError) -> str:
    """`field: what is wrong (got …)` for each problem, in the order pydantic found them."""
    parts = []
    for problem in error.errors(include_url=False):
        location = _location(problem.get("loc", ()))
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown field"
        elif problem["type"] == "missing":
            message = "required"
        elif problem["type"] not in ("value_error", "assertion_error") and "input" in problem:
            message = f"{message} (got {_short(problem['input'])})"
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)


def _location(loc: tuple) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_record(data: Any) -> RecordIn:
    """One row as a validated record; ValueError with a precise reason otherwise."""
    if not isinstance(data, dict):
        raise ValueError(f"a record is a JSON object, not {_json_kind(data)}")
    repeated = _repeated_key(data)
    if repeated:
        raise ValueError(f"{repeated}: field appears twice")
    record_type = data.get("type", "consent")
    if not isinstance(record_type, str) or record_type not in _MODEL_BY_TYPE:
        raise ValueError(f"type: unknown record type {_short(record_type)}; use consent, revocation "
                         f"or business_relationship")
    try:
        return _MODEL_BY_TYPE[record_type].model_validate(data)
    except ValidationError as error:
        raise ValueError(describe_validation_error(error)) from None


def _json_kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _accept(loaded: LoadedFile, line: int, data: Any) -> None:
    try:
        loaded.rows.append(LoadedRow(line, parse_record(data)))
    except ValueError as error:
        loaded.reject(line, str(error))


# --- files ------------------------------------------------------------------------------------

def load_path(path: Path) -> LoadedFile:
    """Read a ledger file; the suffix picks the format, else the first character does."""
    try:
        data = path.read_bytes()
    except OSError as error:
        loaded = LoadedFile()
        loaded.reject(0, f"cannot read {path}: {error.strerror or error}")
        return loaded
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return load_csv_bytes(data)
    if suffix in (".json", ".jsonl", ".ndjson"):
        return load_json_bytes(data)
    return load_json_bytes(data) if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"[", b"{") \
        else load_csv_bytes(data)


def _decode(data: bytes) -> str:
    """Bytes that are not UTF-8 become lone surrogates, so only the rows holding them are
    rejected (by the models' text check) and the rest of the file still loads."""
    return data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")


def _reject_if_empty(loaded: LoadedFile) -> LoadedFile:
    if not loaded.rows and not loaded.errors:
        loaded.reject(0, "the file holds no records")
    return loaded


def load_json_bytes(data: bytes) -> LoadedFile:
    """A JSON array of records, a single record object, or JSON Lines (one record per line)."""
    loaded = LoadedFile()
    text = _decode(data)
    start = len(text) - len(text.lstrip())
    if _is_json_lines(text, start):
        _read_json_lines(text, loaded)
    elif text[start:start + 1] == "[":
        _read_json_array(text, start, loaded)
    elif not (text[start:start + 1] == "{" and _read_single_object(text, start, loaded)):
        _read_json_lines(text, loaded)
    return _reject_if_empty(loaded)


def _is_json_lines(text: str, start: int) -> bool:
    """True when the first line is a whole JSON value and more follows: a pretty-printed array or
    object cannot look like that, and a JSON Lines file whose first row is junk still reads as
    JSON Lines (so its later rows load)."""
    line_end = text.find("\n", start)
    if line_end == -1 or not text[line_end:].strip():
        return False
    first_line = text[start:line_end]
    try:
        _value, end = _decode_at(first_line, 0)
    except ValueError:
        return False
    return not first_line[end:].strip()


class _ObjectWithRepeatedKey(dict):
    """json.loads would keep the last of two `phone` fields silently; such an object is marked
    so that its row is rejected instead (and the rest of the file still reads)."""

    repeated: str = ""


def _mark_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            marked = _ObjectWithRepeatedKey(pairs)
            marked.repeated = key
            return marked
        result[key] = value
    return result


def _repeated_key(data: dict[str, Any]) -> str | None:
    for name, value in (("", data), ("evidence.", data.get("evidence"))):
        if isinstance(value, _ObjectWithRepeatedKey):
            return f"{name}{value.repeated}"
    return None


_DECODER = json.JSONDecoder(object_pairs_hook=_mark_repeated_keys)
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _decode_at(text: str, position: int) -> tuple[Any, int]:
    """(value, end) of the JSON value at `position`; ValueError with a reason otherwise."""
    try:
        return _DECODER.raw_decode(text, position)
    except json.JSONDecodeError as error:
        raise ValueError(f"JSON syntax error: {error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except ValueError as error:        # an integer too long to convert
        raise ValueError(f"JSON value not readable: {error}") from None


def _read_single_object(text: str, start: int, loaded: LoadedFile) -> bool:
    """A file that is one (possibly multi-line) object is one record; False if it is not that."""
    try:
        value, end = _decode_at(text, start)
    except ValueError:
        return False
    if text[end:].strip():
        return False                     # more follows: JSON Lines
    _accept(loaded, _line_of(text, start), value)
    return True


class _LineCounter:
    """Line numbers of increasing positions in one text, counted incrementally: counting from the
    start for every element would make a large array quadratic."""

    def __init__(self, text: str) -> None:
        self.text, self.position, self.line = text, 0, 1

    def at(self, position: int) -> int:
        self.line += self.text.count("\n", self.position, position)
        self.position = position
        return self.line


def _read_json_array(text: str, start: int, loaded: LoadedFile) -> None:
    """Element by element, so each row keeps its line and a syntax error keeps the rows before it."""
    lines = _LineCounter(text)
    position = _WHITESPACE.match(text, start + 1).end()
    if text.startswith("]", position):
        return _expect_end(text, position + 1, loaded)
    while True:
        line = lines.at(position)
        try:
            value, position = _decode_at(text, position)
        except ValueError as error:
            loaded.reject(line, f"{error}; the rest of the array was not read")
            return
        _accept(loaded, line, value)
        position = _WHITESPACE.match(text, position).end()
        if text.startswith(",", position):
            position = _WHITESPACE.match(text, position + 1).end()
        elif text.startswith("]", position):
            return _expect_end(text, position + 1, loaded)
        else:
            where = "the file ends" if position >= len(text) else f"found {text[position]!r}"
            loaded.reject(lines.at(position),
                          f"JSON syntax error: expected ',' or ']' after an array element, {where}; "
                          f"the rest of the array was not read")
            return


def _expect_end(text: str, position: int, loaded: LoadedFile) -> None:
    rest = text[position:]
    if rest.strip():
        loaded.reject(_line_of(text, position + len(rest) - len(rest.lstrip())),
                      "unexpected text after the closing ']' of the array; it was not read")


def _read_json_lines(text: str, loaded: LoadedFile) -> None:
    # Split on \n only: str.splitlines would also split inside a string holding U+2028 or \x1c.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value, end = _decode_at(line, _WHITESPACE.match(line).end())
        except ValueError as error:
            loaded.reject(number, str(error).replace(" at line 1 column", " at column"))
            continue
        if line[end:].strip():
            loaded.reject(number, f"unexpected text after the record at column {end + 1}: "
                                  f"JSON Lines holds one record per line")
            continue
        _accept(loaded, number, value)


def load_csv_bytes(data: bytes) -> LoadedFile:
    """A header row, then one record per row; empty cells count as absent."""
    loaded = LoadedFile()
    text = _decode(data)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = _read_header(reader, loaded)
    if header is None:
        return _reject_if_empty(loaded)
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            loaded.reject(line, f"CSV error: {error}")
            if reader.line_num < line:
                break                    # the reader cannot move past it: stop rather than spin
            continue
        if not any(cell.strip() for cell in cells):
            continue
        row = _csv_row(header, cells)
        if isinstance(row, str):
            loaded.reject(line, row)
        else:
            _accept(loaded, line, row)
    return _reject_if_empty(loaded)


def _read_header(reader, loaded: LoadedFile) -> list[str] | None:
    try:
        cells = next(reader)
    except StopIteration:
        return None
    except csv.Error as error:
        loaded.reject(1, f"CSV error in the header: {error}")
        return None
    header = [cell.strip().lower() for cell in cells]
    if "" in header:
        loaded.reject(1, f"header: column {header.index('') + 1} has no name")
        return None
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        loaded.reject(1, f"header: column {repeated[0]!r} appears twice")
        return None
    if "phone" not in header:
        loaded.reject(1, f"header: no 'phone' column (found {', '.join(header)})")
        return None
    return header


def _csv_row(header: list[str], cells: list[str]) -> dict[str, Any] | str:
    """The row as record fields, or the reason it cannot be one."""
    if len(cells) > len(header):
        return f"{len(cells)} cells but the header has {len(header)} columns"
    row: dict[str, Any] = {}
    for name, cell in zip(header, cells):
        cell = cell.strip() if name != "disclosure_text" else cell
        if not cell.strip():
            continue
        row[name] = [part for part in _LIST_SEPARATORS.split(cell) if part] if name in LIST_FIELDS else cell
    return row
