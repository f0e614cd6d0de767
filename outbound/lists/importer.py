"""The contact import pipeline: read, normalise, place, de-duplicate, store, report, audit.

Rows are stored in batches of BATCH_SIZE, committed every 100k rows (`batch_store`): a
million-row list holds no million-row transaction and no million ORM objects. A failure part-way
leaves the rows already committed and the ListImport row without `finished_at`; importing the
file again completes it, because duplicates are skipped.

Duplicates, within the file and against the campaign, are left to the unique
(campaign_id, e164) constraint with INSERT ... ON CONFLICT DO NOTHING: memory stays flat whatever
the file's size, and two imports racing into one campaign cannot store a number twice. The first
occurrence wins. `accepted` is counted from the rows stored under the import at the end, so it is
exact on every backend; `duplicates` is the rest of the good rows.

Speed (the target: 1M rows in 20 s on two cores; see bench/bench_import.py): parsing runs on the
calling thread and storing on a writer thread (`batch_store` says how the two really overlap);
contact rows are plain tuples, already in the form the column types would produce, because
SQLAlchemy's per-row bind processing (JSON, datetimes) cost more than the inserts themselves.
Each batch is inserted in E.164 order, so contact ids follow the file only from batch to batch;
`source_line` keeps each contact's line.
"""
from __future__ import annotations

import gc
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import BinaryIO

from sqlalchemy import Engine, func, select
from sqlmodel import Session

from consent.location import UnknownState
from outbound import audit
from outbound.db import insert_ignoring_duplicates, session_scope
from outbound.lists.batch_store import Batch, BatchWriter, ImportConstants
from outbound.lists.columns import ColumnMap, map_columns
from outbound.lists.limits import MAX_STORED_REJECTS_PER_REASON
from outbound.lists.normalise import DEFAULT_REGION, Reason, normalise_phone, plain_nanp_e164
from outbound.lists.placement import Placer
from outbound.lists.reader import ListReader, SourceRow
from outbound.models import Campaign, Contact, ImportReject, ListImport

BATCH_SIZE = 10_000
AUDIT_ACTION = "contacts.imported"

_LINE_TYPES = {
    "mobile": "mobile", "cell": "mobile", "cellular": "mobile", "wireless": "mobile", "cell_phone": "mobile",
    "landline": "landline", "land_line": "landline", "land": "landline", "fixed": "landline",
    "fixed_line": "landline", "wireline": "landline",
    "voip": "voip", "unknown": "unknown",
}
_encode_json = json.JSONEncoder(ensure_ascii=False).encode
_encode_json_string = json.encoder.encode_basestring      # what that encoder writes for a str
_LINE_TYPE_GIVEN = "line_type_given"
_CONSENT_FIELDS = ("consent_kind", "consent_granted_at", "consent_evidence", "consent_channels")


class CampaignNotFound(LookupError):
    pass


@dataclass(frozen=True)
class ImportProgress:
    rows: int                # records read so far, good or bad
    bytes_read: int


@dataclass(frozen=True)
class ImportResult:
    import_id: int
    campaign_id: int
    accepted: int
    duplicates: int
    rejected: int
    rejected_by_reason: dict[str, int]
    rows: int
    file_sha256: str

    def summary(self) -> dict:
        """The stable summary scripts read (the CLI's --json line, the API's answer)."""
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected,
                "rejected_by_reason": dict(sorted(self.rejected_by_reason.items()))}


def find_or_create_campaign(session: Session, name: str, at: datetime) -> Campaign:
    """The campaign named `name`; created as a draft when it does not exist yet."""
    values = Campaign(name=name, status="draft", voice="live", created_at=at, updated_at=at).model_dump(exclude={"id"})
    insert_ignoring_duplicates(session, Campaign.__table__, values)
    return session.execute(select(Campaign).where(Campaign.name == name)).scalar_one()


def open_list(stream: BinaryIO, column_map: dict[str, str] | None = None) -> tuple[ListReader, ColumnMap]:
    """Reads the file's header and first record; raises a ListFileError before anything is stored."""
    reader = ListReader(stream)
    return reader, map_columns(reader.header, column_map)


def import_contacts(engine: Engine, reader: ListReader, columns: ColumnMap, *, campaign_id: int,
                    file_name: str, actor: str, at: datetime | None = None,
                    region: str = DEFAULT_REGION,
                    progress: Callable[[ImportProgress], None] | None = None) -> ImportResult:
    """Imports every record of `reader` into the campaign and records the import and its rejects."""
    at = at or datetime.now(timezone.utc)
    with rare_collections():
        return _import_contacts(engine, reader, columns, campaign_id=campaign_id, file_name=file_name,
                                actor=actor, at=at, region=region, progress=progress)


def _import_contacts(engine: Engine, reader: ListReader, columns: ColumnMap, *, campaign_id: int,
                     file_name: str, actor: str, at: datetime, region: str,
                     progress: Callable[[ImportProgress], None] | None) -> ImportResult:
    import_id = _start_import(engine, campaign_id, file_name, actor, at)
    builder = _RowBuilder(columns, region=region)
    reasons: Counter[str] = Counter()
    stored: Counter[str] = Counter()
    rows = 0
    writer = BatchWriter(engine, ImportConstants(campaign_id, import_id, _bound_instant(engine, at)))
    try:
        for batch in _batches(reader.rows(), builder):
            reasons.update(reason for _line, reason, _row in batch.rejects)
            batch.rejects = _rejects_kept(batch.rejects, stored)
            writer.put(batch)
            rows += batch.rows
            if progress:
                progress(ImportProgress(rows=rows, bytes_read=reader.bytes_read))
    except BaseException:
        writer.stop()
        raise
    writer.close()
    return _finish_import(engine, import_id, campaign_id, file_name, actor, at, rows, reasons,
                          reader.meter.sha256.hexdigest())


def _rejects_kept(rejects: list[tuple], stored: Counter[str]) -> list[tuple]:
    """The rejects of a batch that are stored: up to MAX_STORED_REJECTS_PER_REASON of each reason
    per import, counted in `stored`. The counts of the import are kept whole elsewhere."""
    kept = []
    for reject in rejects:
        reason = reject[1]
        if stored[reason] < MAX_STORED_REJECTS_PER_REASON:
            stored[reason] += 1
            kept.append(reject)
    return kept


# A million rows make tens of millions of short-lived objects, each freed by its reference count.
# The cyclic collector's passes over them find nothing and cost 1-1.5 s of a 1M-row import
# (bench/bench_import.py), so while any import runs it passes 100x less often. Process-wide,
# hence counted: concurrent imports (API threads) restore the threshold only when the last ends.
_RARE_GEN0_THRESHOLD = 70_000
_rare_lock = threading.Lock()
_rare_users = 0
_usual_threshold: tuple[int, ...] = gc.get_threshold()


@contextmanager
def rare_collections() -> Iterator[None]:
    global _rare_users, _usual_threshold
    with _rare_lock:
        if _rare_users == 0:
            _usual_threshold = gc.get_threshold()
            gc.set_threshold(max(_RARE_GEN0_THRESHOLD, _usual_threshold[0]), *_usual_threshold[1:])
        _rare_users += 1
    try:
        yield
    finally:
        with _rare_lock:
            _rare_users -= 1
            if _rare_users == 0:
                gc.set_threshold(*_usual_threshold)


def _bound_instant(engine: Engine, at: datetime):
    """`at` as the created_at column's type hands it to this driver (computed once, not per row)."""
    processor = Contact.__table__.c.created_at.type.bind_processor(engine.dialect)
    return processor(at) if processor else at


def _start_import(engine: Engine, campaign_id: int, file_name: str, actor: str, at: datetime) -> int:
    with session_scope(engine) as session:
        if session.get(Campaign, campaign_id) is None:
            raise CampaignNotFound(f"no campaign with id {campaign_id}")
        record = ListImport(campaign_id=campaign_id, file_name=file_name, started_at=at, actor=actor)
        session.add(record)
        session.flush()
        return record.id


def _finish_import(engine: Engine, import_id: int, campaign_id: int, file_name: str, actor: str,
                   at: datetime, rows: int, reasons: Counter[str], sha256: str) -> ImportResult:
    rejected = sum(reasons.values())
    with session_scope(engine) as session:
        accepted = session.execute(select(func.count()).select_from(Contact).where(
            Contact.campaign_id == campaign_id, Contact.import_id == import_id)).scalar_one()
        record = session.get(ListImport, import_id)
        record.accepted, record.duplicates, record.rejected = accepted, rows - rejected - accepted, rejected
        record.rejected_by_reason = dict(sorted(reasons.items()))
        record.file_sha256 = sha256
        record.finished_at = datetime.now(timezone.utc)
        result = ImportResult(import_id=import_id, campaign_id=campaign_id, accepted=record.accepted,
                              duplicates=record.duplicates, rejected=rejected,
                              rejected_by_reason=record.rejected_by_reason, rows=rows, file_sha256=sha256)
        audit.append(session, actor=actor, action=AUDIT_ACTION, subject=f"campaign:{campaign_id}",
                     payload={"import_id": import_id, "file_name": file_name, "file_sha256": sha256,
                              "rows": rows, **result.summary()}, at=at)
    return result


def _batches(rows: Iterable[SourceRow], builder: _RowBuilder) -> Iterable[Batch]:
    batch = Batch()
    add = builder.add
    for row in rows:
        add(row, batch)
        batch.rows += 1
        if batch.rows >= BATCH_SIZE:
            yield batch
            batch = Batch()
    if batch.rows:
        yield batch


class _RowBuilder:
    """Turns a source row into a contact's column values, or a reject. The hot loop of an
    import: lookups are bound once here, and everything slow is cached per prefix or per ZIP."""

    def __init__(self, columns: ColumnMap, *, region: str) -> None:
        self.header = columns.header
        index = columns.field_index
        # A field the file lacks reads the empty cell appended to every row (index -1), which
        # spares the hot loop an `if column is present` per field.
        self.phone_i = index["phone"]
        self.first_i, self.last_i, self.email_i, self.zip_i, self.state_i = (
            index.get(name, -1) for name in ("first_name", "last_name", "email", "zip", "state"))
        self.line_type_i = index.get("line_type")
        self.attributes = _AttributesJson(
            [(name, index[name]) for name in _CONSENT_FIELDS if name in index] + [(name, i) for i, name in columns.extra],
            line_type_given=self.line_type_i is not None)
        # The one-regex path reads a bare ten-digit number as US: only for US-default lists.
        self.plain_e164 = plain_nanp_e164 if region == DEFAULT_REGION else _no_plain_e164
        self.region = region
        self.placer = Placer()

    def add(self, row: SourceRow, batch: Batch) -> None:
        fields = row.fields
        if row.problem:
            batch.rejects.append(self._reject(row.line, row.problem, fields))
            return
        raw_phone = fields[self.phone_i]
        e164 = self.plain_e164(raw_phone)
        if e164 is None:
            e164, reason = normalise_phone(raw_phone, self.region)
            if e164 is None:
                batch.rejects.append(self._reject(row.line, reason, fields))
                return
        fields.append("")
        try:
            zip_code, state, placement = self.placer.resolve(e164, fields[self.zip_i], fields[self.state_i])
        except UnknownState:
            fields.pop()
            batch.rejects.append(self._reject(row.line, Reason.UNKNOWN_STATE, fields))
            return
        if self.line_type_i is None:
            line_type, line_type_given = "unknown", None
        else:
            line_type, line_type_given = _line_type(fields[self.line_type_i])
        batch.contacts.append((            # CONTACT_ROW_COLUMNS
            e164, raw_phone.strip(),
            fields[self.first_i].strip() or None, fields[self.last_i].strip() or None,
            fields[self.email_i].strip() or None, zip_code, state, line_type,
            placement.timezones, placement.states,
            self.attributes.encode(fields, line_type_given), row.line,
        ))

    def _reject(self, line: int, reason: str, fields: list[str]) -> tuple[int, str, dict]:
        return line, reason, original_columns(self.header, fields)


def _line_type(raw: str) -> tuple[str, str | None]:
    """(line type, the cell as given when it names none): unknown counts as mobile at the gate
    (the strict side), and the attributes keep what the file said."""
    text = raw.strip()
    line_type = _LINE_TYPES.get(text.lower().replace(" ", "_").replace("-", "_"))
    return line_type or "unknown", (text if line_type is None and text else None)


def _no_plain_e164(_raw: str) -> None:
    return None


class _AttributesJson:
    """The attributes column of a row: the non-empty cells of the unmapped (and consent)
    columns, plus `line_type_given`, as the JSON text `_encode_json` writes for that dict. Keys
    are encoded once per import, since a JSONEncoder call per row cost more than all the row's
    other cells; when two attributes share a name the dict is built, so the later cell wins in
    the earlier place as before."""

    def __init__(self, columns: list[tuple[str, int]], *, line_type_given: bool) -> None:
        self._columns = columns
        names = [name for name, _i in columns] + ([_LINE_TYPE_GIVEN] if line_type_given else [])
        self._names_unique = len(set(names)) == len(names)
        self._keys = [(_encode_json_string(name) + ": ", i) for name, i in columns]
        self._line_type_key = _encode_json_string(_LINE_TYPE_GIVEN) + ": "

    def encode(self, fields: list[str], line_type_given: str | None) -> str:
        if not self._names_unique:
            return self._encode_dict(fields, line_type_given)
        parts = [key + _encode_json_string(value) for key, i in self._keys if (value := fields[i].strip())]
        if line_type_given:
            parts.append(self._line_type_key + _encode_json_string(line_type_given))
        return "{" + ", ".join(parts) + "}" if parts else "{}"

    def _encode_dict(self, fields: list[str], line_type_given: str | None) -> str:
        attributes = {}
        for name, i in self._columns:
            if value := fields[i].strip():
                attributes[name] = value
        if line_type_given:
            attributes[_LINE_TYPE_GIVEN] = line_type_given
        return _encode_json(attributes) if attributes else "{}"


def original_columns(header: tuple[str, ...], fields: list[str]) -> dict[str, str]:
    """A rejected row as header -> value; cells past the header are kept as extra_1, extra_2..."""
    row = {}
    for i, value in enumerate(fields):
        name = header[i] if i < len(header) else f"extra_{i - len(header) + 1}"
        if name in row or not name:
            name = f"column_{i + 1}"
        row[name] = value
    return row


