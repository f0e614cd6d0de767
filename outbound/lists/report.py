"""The import report: counts as a dict, rejected rows as CSV.

Every rejected row is counted by reason; the rows themselves are kept up to
MAX_STORED_REJECTS_PER_REASON per reason (`rejects_stored` and `rejects_stored_per_reason` in the
report say how many and the bound).

The reject CSV has `line`, `reason`, then the file's own columns. It is opened in spreadsheets,
and a cell starting with = + - or @ (or a tab or carriage return) would run there as a formula,
so such cells are prefixed with a single quote. A phone `+44 20...` therefore reads `'+44 20...`:
the price of a report that cannot execute anything.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import TextIO

from sqlalchemy import func, select
from sqlmodel import Session

from outbound.lists.limits import MAX_STORED_REJECTS_PER_REASON
from outbound.models import ImportReject, ListImport

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_FETCH_ROWS = 5_000


class ImportNotFound(LookupError):
    pass


def safe_cell(value: object) -> str:
    """`value` as a CSV cell a spreadsheet shows as text, never evaluates."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def import_summary(session: Session, import_id: int) -> dict:
    """The report of one import: its counts and where it came from."""
    record = _get_import(session, import_id)
    return {
        "import_id": record.id, "campaign_id": record.campaign_id, "file_name": record.file_name,
        "file_sha256": record.file_sha256, "actor": record.actor,
        "started_at": record.started_at.isoformat() if record.started_at else None,
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
        "accepted": record.accepted, "duplicates": record.duplicates, "rejected": record.rejected,
        "rejected_by_reason": dict(sorted((record.rejected_by_reason or {}).items())),
        "rejects_stored": _count_rejects(session, import_id),
        "rejects_stored_per_reason": MAX_STORED_REJECTS_PER_REASON,
    }


def write_rejects_csv(session: Session, import_id: int, out: TextIO) -> int:
    """Writes the reject report of an import to `out`; returns the number of rows written."""
    for chunk in iter_rejects_csv(session, import_id):
        out.write(chunk)
    return _count_rejects(session, import_id)


def iter_rejects_csv(session: Session, import_id: int) -> Iterator[str]:
    """The reject report as CSV text in chunks, for a streamed HTTP answer or a file.

    Two passes over the rejects: the first collects the columns (ragged rows may carry more
    cells than the header), the second writes; neither holds all rejects in memory."""
    _get_import(session, import_id)
    columns = _reject_columns(session, import_id)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["line", "reason", *(safe_cell(c) for c in columns)])
    for reject in _stream_rejects(session, import_id):
        row = reject.row or {}
        writer.writerow([reject.line, reject.reason, *(safe_cell(row.get(c, "")) for c in columns)])
        if buffer.tell() > 64 * 1024:
            yield _drain(buffer)
    yield _drain(buffer)


def _reject_columns(session: Session, import_id: int) -> list[str]:
    columns: dict[str, None] = {}
    for reject in _stream_rejects(session, import_id):
        for name in reject.row or {}:
            columns.setdefault(name, None)
    return list(columns)


def _stream_rejects(session: Session, import_id: int) -> Iterator[ImportReject]:
    statement = (select(ImportReject).where(ImportReject.import_id == import_id)
                 .order_by(ImportReject.line, ImportReject.id).execution_options(yield_per=_FETCH_ROWS))
    for reject in session.execute(statement).scalars():
        yield reject


def _count_rejects(session: Session, import_id: int) -> int:
    return session.execute(select(func.count()).select_from(ImportReject)
                           .where(ImportReject.import_id == import_id)).scalar_one()


def _get_import(session: Session, import_id: int) -> ListImport:
    record = session.get(ListImport, import_id)
    if record is None:
        raise ImportNotFound(f"no list import with id {import_id}")
    return record


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
