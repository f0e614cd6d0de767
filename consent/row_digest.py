"""The digest of a stored fact row, recorded in its audit event and re-computed by verify.

Every consent, revocation, business-relationship and DNC change is audited with a digest of
each row it wrote, read back from the database as stored. `outbound audit verify` re-reads
those tables, digests every row the same way and reports a row that differs from, lacks, or was
removed after its audit event. The one function below serves both sides, so they cannot drift.

The digest covers every column of the row's table by name, except NULL ones: a column added
later (nullable, NULL on old rows) leaves the digests of existing rows unchanged, while setting
any column, new or old, changes it.

A bulk load (a state list of a million numbers) does not write one audit event per row: its
event carries a *row set* (the ids it wrote as ranges, and one digest per chunk of CHUNK rows in
id order). Verify names a removed or inserted row by id, and an edited one by the chunk of ids
it sits in. Row sets are for rows never updated after the load.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import ColumnElement, Table, select
from sqlalchemy.orm import Session

from consent.tables import BusinessRelationship, ConsentRecord, DncEntry, DncSource, Revocation

# The tables whose rows the audit protects, by table name.
AUDITED_TABLES: dict[str, Table] = {model.__tablename__: model.__table__ for model in (
    ConsentRecord, Revocation, BusinessRelationship, DncSource, DncEntry)}
CHUNK = 128                 # rows per digest of a row set
CHUNK_DIGEST_CHARS = 32     # 128 bits: far beyond any search for a matching edit
_READ_BATCH = 1000          # ids per IN (...) when reading rows back


def row_digest(row: Mapping[str, Any]) -> str:
    """sha256 (hex) of the row's non-NULL columns as canonical JSON, instants in UTC."""
    values = {name: value for name, value in row.items() if value is not None}
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        # Naive instants only come from a reflected table (a migration): storage is UTC.
        aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return aware.astimezone(timezone.utc).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"row_digest: cannot digest {type(value).__name__} {value!r}")


def table_of(row: Any) -> Table:
    """The audited table an ORM row belongs to; TypeError for any other."""
    table = getattr(type(row), "__table__", None)
    if table is None or AUDITED_TABLES.get(table.name) is not table:
        raise TypeError(f"{type(row).__name__} is not an audited table ({', '.join(AUDITED_TABLES)})")
    return table


def stored_digests(session: Session, *rows: Any) -> dict[str, dict[str, str]]:
    """`{table: {id: digest}}` of ORM rows, read back as the database stores them: the value an
    audit event carries as `row_digests`. The rows must be flushed."""
    session.flush()
    ids: dict[str, list[int]] = {}
    for row in rows:
        if row.id is None:
            raise ValueError(f"{type(row).__name__} has no id yet: flush it before auditing it")
        ids.setdefault(table_of(row).name, []).append(row.id)
    return {name: digests_by_id(session, AUDITED_TABLES[name], wanted) for name, wanted in ids.items()}


def digests_by_id(session: Session, table: Table, ids: Iterable[int]) -> dict[str, str]:
    """`{id: digest}` (ids as JSON object keys: strings) of the stored rows with those ids."""
    wanted = sorted(set(ids))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), _READ_BATCH):
        chunk = wanted[start:start + _READ_BATCH]
        for row in session.connection().execute(select(table).where(table.c.id.in_(chunk))):
            found[str(row.id)] = row_digest(row._mapping)
    return found


# --- row sets (bulk loads) --------------------------------------------------------------------

def id_ranges(ids: Iterable[int]) -> list[list[int]]:
    """Sorted ids as `[[first, last], ...]` runs of consecutive ids."""
    ranges: list[list[int]] = []
    for row_id in sorted(ids):
        if ranges and row_id == ranges[-1][1] + 1:
            ranges[-1][1] = row_id
        else:
            ranges.append([row_id, row_id])
    return ranges


def expand_ranges(ranges: Iterable[Iterable[int]]) -> Iterable[int]:
    for first, last in ranges:
        yield from range(first, last + 1)


class ChunkDigest:
    """Accumulates the row digests of one chunk of a row set, in id order."""

    __slots__ = ("_hash",)

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def add(self, digest: str) -> None:
        self._hash.update(digest.encode("ascii"))

    def hexdigest(self) -> str:
        return self._hash.hexdigest()[:CHUNK_DIGEST_CHARS]


def stored_row_set(session: Session, table: Table, where: ColumnElement[bool]) -> dict[str, Any]:
    """The row set of the stored rows of `table` matching `where`: what a bulk load's audit
    event carries (in a list under `row_sets`)."""
    session.flush()
    ids: list[int] = []
    chunks: list[str] = []
    chunk = ChunkDigest()
    statement = select(table).where(where).order_by(table.c.id).execution_options(yield_per=10_000)
    # Core rows on the session's connection: through the ORM the read costs twice as much.
    for row in session.connection().execute(statement):
        ids.append(row.id)
        chunk.add(row_digest(row._mapping))
        if len(ids) % CHUNK == 0:
            chunks.append(chunk.hexdigest())
            chunk = ChunkDigest()
    if len(ids) % CHUNK:
        chunks.append(chunk.hexdigest())
    return {"table": table.name, "count": len(ids), "ids": id_ranges(ids), "chunk": CHUNK,
            "chunks": chunks}
