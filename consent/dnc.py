"""The do-not-call lists kept in SQL: the internal list, state lists and the litigator list.

The national registry is too big for rows and lives in `consent.registry_store`; this module
records its loads as `DncSource` rows too, so every list a decision saw has a version on file.

Nothing is deleted. An internal removal stamps `removed_at/by/removal_reason`. A new load of a
state or litigator list is a new `DncSource`; only the newest load of each list counts, and the
rows of older loads stay to explain past decisions.

Functions that change data take `audit(session, *, actor, action, subject, payload, at)`, written
in the caller's transaction (the CLI passes `outbound.audit.append`).
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, insert, or_, select
from sqlmodel import Session

from consent import bulk_numbers
from consent.location import known_states, parse_nanp, to_e164
from consent.text_files import read_text_file
from consent.registry_store import STALE_AFTER_DAYS, RegistryStore, age_days
from consent.row_digest import stored_digests, stored_row_set
from consent.tables import DncEntry, DncSource

Audit = Callable[..., object]

WARN_AFTER_DAYS = 24                     # a week's notice before the 31-day limit
INSERT_BATCH = 10_000
LOOKUP_BATCH = 500                       # numbers per IN (...) query
MALFORMED_SAMPLES = 100
PHONE_HEADERS = ("phone", "phonenumber", "phone_number", "mobile", "cell", "number", "telephone",
                 "tel", "mobilephone", "cellphone", "mobile_number", "cell_number")
STATE_LIST_KIND = "state"
LITIGATOR_KIND = "litigator"
INTERNAL_KIND = "internal"


class DncError(ValueError):
    """A request the lists cannot carry out; the message says what to fix."""


class InvalidNumber(DncError):
    pass


class MissingReason(DncError):
    pass


class NotListed(DncError):
    pass


class ListFileError(DncError):
    """A list file that cannot be read at all (encoding, binary, empty, no phone column)."""


class MalformedList(ListFileError):
    """A list refused whole because some lines hold no usable number: the current list is kept
    and no date is renewed. `samples` gives the first bad lines (line number, why, text)."""

    def __init__(self, path: Path, lines: int, rejected: dict[str, int], samples: list["RejectedLine"]) -> None:
        self.path, self.lines, self.rejected_by_reason, self.samples = path, lines, rejected, samples
        self.rejected = sum(rejected.values())
        first = f"; first: line {samples[0].line}: {samples[0].reason}: {samples[0].text!r}" if samples else ""
        super().__init__(f"{path}: {self.rejected:,} line{'s' if self.rejected != 1 else ''} without a usable "
                         f"number: nothing was loaded and the current list is kept; fix or remove those "
                         f"lines and load again{first}")

    def to_dict(self) -> dict:
        return {"error": str(self), "loaded": False, "lines": self.lines, "rejected": self.rejected,
                "rejected_by_reason": self.rejected_by_reason,
                "rejected_samples": [asdict(sample) for sample in self.samples]}


# --- numbers ----------------------------------------------------------------------------------

def e164_of(phone: str) -> str:
    """The E.164 form of a NANP number, or InvalidNumber saying why not."""
    e164, reason = bulk_numbers.normalise(phone)
    if e164 is not None:
        return e164
    number = parse_nanp(phone)         # formats the fast reader does not know
    if number is not None and not number.extension:
        return to_e164(number)
    raise InvalidNumber(f"{phone!r} is not a valid US/NANP phone number ({reason})")


# --- internal list ----------------------------------------------------------------------------

def _active_internal(session: Session, phone: str) -> list[DncEntry]:
    return list(session.execute(select(DncEntry).where(
        DncEntry.list_kind == INTERNAL_KIND, DncEntry.phone == phone,
        DncEntry.removed_at.is_(None))).scalars())


def add_internal(session: Session, phone: str, *, reason: str, actor: str, at: datetime,
                 audit: Audit, via: str = "manual", revocation_id: int | None = None) -> tuple[DncEntry, bool]:
    """Put a number on the internal list, recording who (`actor`), when (`at`) and how (`via`,
    and the opt-out's `revocation_id` when it came as one). (entry, True) when added, (existing
    entry, False) when it was already there: nothing changes and nothing is audited then."""
    e164 = e164_of(phone)
    reason = (reason or "").strip()
    if not reason:
        raise MissingReason("adding a number to the internal list needs a reason (who asked, how)")
    existing = _active_internal(session, e164)
    if existing:
        return existing[0], False
    entry = DncEntry(list_kind=INTERNAL_KIND, phone=e164, added_at=at, added_by=actor, reason=reason,
                     via=via, revocation_id=revocation_id)
    session.add(entry)
    session.flush()
    audit(session, actor=actor, action="dnc.internal.add", subject=e164,
          payload={"entry_id": entry.id, "reason": reason, "via": via, "revocation_id": revocation_id,
                   "row_digests": stored_digests(session, entry)}, at=at)
    return entry, True


def remove_internal(session: Session, phone: str, *, reason: str, actor: str, at: datetime,
                    audit: Audit) -> list[DncEntry]:
    """Take a number off the internal list: the entries are stamped as removed, never deleted."""
    e164 = e164_of(phone)
    reason = (reason or "").strip()
    if not reason:
        raise MissingReason("removing a number from the internal list needs a non-empty reason")
    entries = _active_internal(session, e164)
    if not entries:
        raise NotListed(f"{e164} is not on the internal list")
    for entry in entries:
        entry.removed_at, entry.removed_by, entry.removal_reason = at, actor, reason
        session.add(entry)
    session.flush()
    audit(session, actor=actor, action="dnc.internal.remove", subject=e164,
          payload={"entry_ids": [e.id for e in entries], "reason": reason,
                   "row_digests": stored_digests(session, *entries)}, at=at)
    return entries


# --- state and litigator lists ---------------------------------------------------------------

@dataclass
class RejectedLine:
    line: int
    reason: str
    text: str


@dataclass
class ListImportReport:
    kind: str
    state: str | None
    source_id: int
    version: str
    file: str
    file_sha256: str
    lines: int
    entries: int                      # distinct valid numbers loaded
    duplicates: int
    rejected: int
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    rejected_samples: list[RejectedLine] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _decode(path: Path) -> str:
    return read_text_file(path, ListFileError, "a text list of numbers")


def normalised_header(name: str) -> str:
    return "".join(name.split()).lower().replace("-", "_")


def find_phone_column(header: list[str]) -> int | None:
    """Index of the phone column by its common names (case and spaces ignored), else None."""
    names = [normalised_header(h) for h in header]
    for wanted in PHONE_HEADERS:
        for index, name in enumerate(names):
            if name == wanted or name.replace("_", "") == wanted.replace("_", ""):
                return index
    return None


def _list_numbers(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, phone text) of a list: one number per line, or CSV with a phone column.

    Lines end in LF, CRLF or a lone CR. A CSV line the reader cannot
    take (a stray quote, a NUL, a field past the csv module's limit) and a quoted field that
    runs over a line end refuse the whole list (MalformedList, naming the line): a number swallowed
    into another field would otherwise be silently missing from a do-not-call list."""
    text = _decode(path)
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    dialect_delimiter = max(",;\t", key=first.count)
    if first.count(dialect_delimiter) == 0 and bulk_numbers.normalise(first)[0] is not None:
        # One number per line, no header.
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield number, line
        return
    rows = _csv_rows(path, text, dialect_delimiter)
    _line, header = next(rows, (1, []))
    column = find_phone_column(header)
    if column is None:
        if len(header) == 1:         # a single column whose first line is a title or bad number
            if any(character.isdigit() for character in header[0]):
                yield 1, header[0]   # a title has no digits: a line with some is a bad number
            column = 0
        else:
            raise ListFileError(f"{path}: no phone column; header seen: {', '.join(header)} "
                                f"(name one column phone, phone_number, mobile, cell or number)")
    for line_number, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        yield line_number, row[column] if column < len(row) else ""


UNREADABLE_CSV = "unreadable_csv_line"
FIELD_OVER_LINES = "quoted_field_over_lines"
_LINE_ENDS = re.compile(r"\r\n|\r|\n")


def _csv_rows(path: Path, text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(first line number, cells) of each CSV record; MalformedList for a record the reader
    cannot take or one whose quoted field spans lines."""
    # newline="": the csv module reads line ends itself, a lone \r included (the default
    # StringIO splits on \n only, so "\r\"" made csv.Error, a 500 through the API).
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    start = 1
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as error:
            raise _refused_line(path, text, start, UNREADABLE_CSV, f"{UNREADABLE_CSV} ({error})") from None
        end = rows.line_num
        if end > start and any("\n" in cell or "\r" in cell for cell in row):
            raise _refused_line(path, text, start, FIELD_OVER_LINES,
                                f"{FIELD_OVER_LINES} (a quote opened here runs to line {end}: a stray "
                                "quote? numbers after it would be lost)")
        yield start, row
        start = end + 1


def _refused_line(path: Path, text: str, line: int, code: str, why: str) -> MalformedList:
    """The whole list refused for one CSV line: after it, which line holds what is not known."""
    found = _LINE_ENDS.split(text, maxsplit=line)
    shown = found[line - 1] if line <= len(found) else ""
    return MalformedList(path, line, {code: 1}, [RejectedLine(line, why, shown[:60])])


def _import_list(session: Session, path: Path, *, kind: str, state: str | None, at: datetime,
                 actor: str, audit: Audit, version: str | None, synced_at: datetime | None) -> ListImportReport:
    if not path.is_file():
        raise ListFileError(f"{path}: no such file")
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    seen: set[str] = set()
    rejected: dict[str, int] = {}
    samples: list[RejectedLine] = []
    lines = duplicates = 0
    for line_number, raw in _list_numbers(path):
        lines += 1
        e164, reason = bulk_numbers.normalise(raw)
        if e164 is None:
            rejected[reason] = rejected.get(reason, 0) + 1
            if len(samples) < MALFORMED_SAMPLES:
                samples.append(RejectedLine(line_number, reason, raw[:60]))
        elif e164 in seen:
            duplicates += 1
        else:
            seen.add(e164)
    if rejected:
        # A load is all or nothing: a partial list would replace the whole previous one.
        raise MalformedList(path, lines, rejected, samples)
    if synced_at is not None and synced_at > at:
        raise DncError(f"synced_at {_iso(synced_at)} is in the future (now {_iso(at)}): give when the list "
                       "was actually obtained")
    if not seen:
        # A new load replaces the previous one: an empty or unreadable file must not empty the list.
        raise ListFileError(f"{path}: no valid phone number in {lines} lines; the current list is kept")
    source = DncSource(kind=kind, state=state, version=version or f"{at:%Y-%m-%d}.{sha256[:12]}",
                       file_name=path.name, file_sha256=sha256, entries=len(seen),
                       synced_at=synced_at or at, loaded_at=at, loaded_by=actor,
                       meta={"lines": lines, "duplicates": duplicates, "rejected": rejected})
    session.add(source)
    session.flush()
    _insert_entries(session, source, sorted(seen), at, actor)
    audit(session, actor=actor, action=f"dnc.{kind}.import", subject=state or kind,
          payload={"source_id": source.id, "version": source.version, "file": path.name,
                   "sha256": sha256, "entries": len(seen), "rejected": sum(rejected.values()),
                   "row_digests": stored_digests(session, source),
                   "row_sets": [stored_row_set(session, DncEntry.__table__,
                                               DncEntry.__table__.c.source_id == source.id)]}, at=at)
    return ListImportReport(kind=kind, state=state, source_id=source.id, version=source.version,
                            file=str(path), file_sha256=sha256, lines=lines, entries=len(seen),
                            duplicates=duplicates, rejected=sum(rejected.values()),
                            rejected_by_reason=rejected, rejected_samples=samples)


def _insert_entries(session: Session, source: DncSource, phones: list[str], at: datetime, actor: str) -> None:
    """Bulk insert (one statement per batch): ORM objects would cost minutes for a big state list."""
    table = DncEntry.__table__
    for start in range(0, len(phones), INSERT_BATCH):
        session.execute(insert(table), [
            {"source_id": source.id, "list_kind": source.kind, "state": source.state, "phone": phone,
             "added_at": at, "added_by": actor} for phone in phones[start:start + INSERT_BATCH]])


def import_state_list(session: Session, state: str, path: str | Path, *, at: datetime, actor: str,
                      audit: Audit, version: str | None = None,
                      synced_at: datetime | None = None) -> ListImportReport:
    """Load a state's do-not-call list; it replaces that state's previous load."""
    code = (state or "").strip().upper()
    if code not in known_states():
        # A typo (FK for FL) must not load as a list of its own while FL's stays old.
        raise DncError(f"state code {state!r}: use the two-letter USPS code of a US state or territory, such as FL")
    return _import_list(session, Path(path), kind=STATE_LIST_KIND, state=code, at=at, actor=actor,
                        audit=audit, version=version, synced_at=synced_at)


def import_litigator_list(session: Session, path: str | Path, *, at: datetime, actor: str, audit: Audit,
                          version: str | None = None, synced_at: datetime | None = None) -> ListImportReport:
    """Load the litigator list; it replaces the previous load."""
    return _import_list(session, Path(path), kind=LITIGATOR_KIND, state=None, at=at, actor=actor,
                        audit=audit, version=version, synced_at=synced_at)


def record_national_load(session: Session, *, kind: str, version: str, files: list[dict], entries: int,
                         synced_at: datetime, at: datetime, actor: str, audit: Audit) -> DncSource:
    """Record a registry store build (kind `national` or `national_changes`) as a DncSource."""
    source = DncSource(kind=kind, version=version, file_name=", ".join(f["name"] for f in files)[:500],
                       file_sha256=files[0]["sha256"] if len(files) == 1 else None, entries=entries,
                       synced_at=synced_at, loaded_at=at, loaded_by=actor,
                       meta={"files": [{k: f[k] for k in ("name", "sha256", "lines", "area_codes") if k in f}
                                        for f in files]})
    session.add(source)
    session.flush()
    audit(session, actor=actor, action=f"dnc.{kind}.import", subject="national",
          payload={"source_id": source.id, "version": version, "entries": entries,
                   "files": source.meta["files"], "row_digests": stored_digests(session, source)}, at=at)
    return source


# --- lookups ----------------------------------------------------------------------------------

def current_sources(session: Session) -> list[DncSource]:
    """The newest load of each state list and of the litigator list."""
    newest = (select(func.max(DncSource.id))
              .where(DncSource.kind.in_((STATE_LIST_KIND, LITIGATOR_KIND)))
              .group_by(DncSource.kind, DncSource.state))
    return list(session.execute(select(DncSource).where(DncSource.id.in_(newest))
                             .order_by(DncSource.kind, DncSource.state)).scalars())


def _active_condition(source_ids: list[int]):
    return DncEntry.removed_at.is_(None) & or_(DncEntry.list_kind == INTERNAL_KIND,
                                               DncEntry.source_id.in_(source_ids or [-1]))


def _empty_listing() -> dict:
    return {"state": [], "internal": False, "litigator": False}


def listed_sources(session: Session, phones: Iterable[str]) -> dict[str, dict]:
    """Listings of those `phones` (E.164) that are on any SQL list; unlisted phones are absent.

    When the lists are smaller than the batch, reading them whole is one query instead of
    thousands of IN (...) lookups."""
    wanted = set(phones)
    source_ids = [source.id for source in current_sources(session)]
    active = _active_condition(source_ids)
    columns = select(DncEntry.phone, DncEntry.list_kind, DncEntry.state).where(active)
    size = session.execute(select(func.count()).select_from(DncEntry).where(active)).scalar_one()
    if size <= len(wanted):
        rows = (row for row in session.execute(columns) if row.phone in wanted)
    else:
        ordered = sorted(wanted)
        rows = (row for start in range(0, len(ordered), LOOKUP_BATCH)
                for row in session.execute(columns.where(DncEntry.phone.in_(ordered[start:start + LOOKUP_BATCH]))))
    listings: dict[str, dict] = {}
    for phone, kind, state in rows:
        listing = listings.setdefault(phone, _empty_listing())
        if kind == STATE_LIST_KIND and state not in listing["state"]:
            listing["state"].append(state)
        elif kind in (INTERNAL_KIND, LITIGATOR_KIND):
            listing[kind] = True
    for listing in listings.values():
        listing["state"].sort()
    return listings


def sources_listing_many(session: Session, phones: Iterable[str]) -> dict[str, dict]:
    """`{phone: {"state": [codes], "internal": bool, "litigator": bool}}` for every phone given."""
    phones = list(phones)
    listed = listed_sources(session, phones)
    return {phone: listed.get(phone) or _empty_listing() for phone in phones}


def internal_entry(session: Session, phone_e164: str) -> dict | None:
    """The number's active internal entry, with who put it there, when and how; None if none."""
    entries = _active_internal(session, phone_e164)
    if not entries:
        return None
    entry = min(entries, key=lambda e: e.id)
    return {"id": entry.id, "added_at": _iso(entry.added_at.astimezone(timezone.utc)), "added_by": entry.added_by, "via": entry.via,
            "reason": entry.reason, "revocation_id": entry.revocation_id}


def sources_listing(session: Session, phone_e164: str) -> dict:
    """The SQL lists holding one number, shaped as the gate's `dnc` facts (national aside)."""
    return sources_listing_many(session, [phone_e164])[phone_e164]


# --- status -----------------------------------------------------------------------------------

def _freshness(synced_at: datetime | str | None, now: datetime) -> tuple[float | None, str | None, bool]:
    """(age in days, warning, stale) of a source synced at `synced_at`."""
    if isinstance(synced_at, datetime):
        synced_at = synced_at.isoformat()
    age = age_days(synced_at, now)
    if age is None:
        return None, "no data loaded: telemarketing is blocked until it is", True
    if age > STALE_AFTER_DAYS:
        return age, f"stale: synced {age:.0f} days ago, over the {STALE_AFTER_DAYS}-day limit", True
    if age > WARN_AFTER_DAYS:
        left = STALE_AFTER_DAYS - age
        return age, f"synced {age:.0f} days ago: refresh within {left:.0f} days (limit {STALE_AFTER_DAYS})", False
    return age, None, False


def status(session: Session, registry_store: RegistryStore, now: datetime) -> list[dict]:
    """Each source with its size, version and age; `warning` past 24 days, `stale` past 31.

    The gate fails closed only on a stale national registry; state and litigator lists get the
    same warnings because a list kept months past its publication is as risky."""
    rows = [_national_row(registry_store.status(), now)]
    for source in current_sources(session):
        age, warning, stale = _freshness(source.synced_at, now)
        name = f"state:{source.state}" if source.kind == STATE_LIST_KIND else source.kind
        rows.append({"source": name, "kind": source.kind, "state": source.state, "entries": source.entries,
                     "version": source.version, "synced_at": _iso(source.synced_at),
                     "age_days": _rounded(age), "warning": warning, "stale": stale})
    last_added, last_removed = session.execute(
        select(func.max(DncEntry.added_at), func.max(DncEntry.removed_at))
        .where(DncEntry.list_kind == INTERNAL_KIND)).one()
    last_change = max((t for t in (last_added, last_removed) if t is not None), default=None)
    active = session.execute(select(func.count()).select_from(DncEntry).where(
        DncEntry.list_kind == INTERNAL_KIND, DncEntry.removed_at.is_(None))).scalar_one()
    rows.append({"source": "internal", "kind": INTERNAL_KIND, "state": None, "entries": active,
                 "version": _iso(_aware(last_change)), "synced_at": None, "age_days": None,
                 "warning": None, "stale": False})
    return rows


def _national_row(national: dict, now: datetime) -> dict:
    """The registry's status row. Its date is the oldest area code's (`synced_at`, kept for
    compatibility, equals `oldest_synced_at`); `stale_area_codes` are those past 31 days, which
    the gate blocks for telemarketing like area codes never loaded."""
    age, warning, stale = _freshness(national["synced_at"], now)
    coverage = national.get("coverage", {})
    stale_codes = [npa for npa, held in coverage.items() if age_days(held["synced_at"], now) > STALE_AFTER_DAYS]
    baseline_age = age_days(national.get("baseline_synced_at"), now)
    if stale and stale_codes and len(stale_codes) < len(coverage):
        warning = (f"{len(stale_codes)} of {len(coverage)} area codes synced over {STALE_AFTER_DAYS} days ago "
                   f"(telemarketing to them is blocked): {', '.join(stale_codes[:20])}"
                   f"{' ...' if len(stale_codes) > 20 else ''}; {warning}")
    elif not stale and baseline_age is not None and baseline_age > STALE_AFTER_DAYS:
        warning = (f"change lists are current but the last full download is {baseline_age:.0f} days "
                   "old: re-baseline with a full download")
    return {"source": "national", "kind": "national", "state": None, "entries": national["entries"],
            "area_codes": national["area_codes"], "version": national["version"],
            "synced_at": national["synced_at"], "age_days": _rounded(age), "warning": warning,
            "stale": stale, "size_bytes": national["size_bytes"],
            "area_codes_held": national.get("area_codes_held", []),
            "oldest_synced_at": national.get("oldest_synced_at"),
            "newest_synced_at": national.get("newest_synced_at"),
            "stale_area_codes": stale_codes,
            "coverage": {npa: {"synced_at": held["synced_at"], "entries": held.get("entries"),
                               "files": held.get("files", [])} for npa, held in coverage.items()}}


def _aware(instant: datetime | None) -> datetime | None:
    """Aggregates (max) bypass the column type on SQLite and come back naive: they are UTC."""
    if instant is None or instant.tzinfo is not None:
        return instant
    return instant.replace(tzinfo=timezone.utc)


def _rounded(age: float | None) -> float | None:
    return None if age is None else round(age, 1)


def _iso(instant: datetime | None) -> str | None:
    return instant.isoformat().replace("+00:00", "Z") if instant else None
