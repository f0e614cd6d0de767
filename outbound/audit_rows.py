"""The second half of `audit verify`: the fact rows against the digests their events recorded.

Events that change consent, revocation, business-relationship or DNC rows carry, in their
payload, `row_digests` (`{table: {id: digest or null}}`, the rows as stored after the change;
null: the row was deleted on purpose) and, for bulk loads, `row_sets` (see
`consent.row_digest`). The latest event naming a row says what the row must be now.

`check` re-reads every audited table in id order and reports each row that
- differs from its latest audit event (`edited`),
- has no audit event at all (`unaudited`: inserted behind the audit's back), or
- is gone although an event recorded it (`removed`).

A row edited inside a bulk load is named by the chunk of ids it sits in (the load's event keeps
one digest per chunk, not one per row, so loads stay fast).

The national registry is not in these tables: it is a file store. Its loads are audited with the
store's version and the files' sha256 (`dnc.national.import`), and its `dnc_sources` row is
checked here; checking the store's files against those sha256 is not done yet.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, select
from sqlmodel import Session

from consent.row_digest import AUDITED_TABLES, CHUNK, ChunkDigest, expand_ranges, row_digest

MAX_LISTED = 100                 # problems listed in full; all are counted
_READ_BATCH = 10_000
_MARKS = ('"row_digests":', '"row_sets":')


@dataclass(frozen=True)
class RowProblem:
    table: str
    row_id: int
    problem: str                 # edited | unaudited | removed
    event_id: int | None         # the audit event the row was checked against
    detail: str
    last_row_id: int | None = None   # a bulk-load chunk: the problem is among row_id..last_row_id


@dataclass
class RowCheck:
    rows_checked: int = 0
    tables: dict[str, int] = field(default_factory=dict)     # rows read per table
    problems_total: int = 0
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problems_total == 0

    def report(self, problem: RowProblem) -> None:
        self.problems_total += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(problem)


def carries_rows(payload_json: str) -> bool:
    """Whether an event's payload may name rows (a substring test: most events do not).
    The quote before the colon cannot occur unescaped inside a JSON string, only as a key."""
    return _MARKS[0] in payload_json or _MARKS[1] in payload_json


class Expectations:
    """What the events say each row must be, gathered while the chain is walked."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[int, tuple[str | None, int]]] = {name: {} for name in AUDITED_TABLES}
        self.sets: dict[str, list[_SetCheck]] = {name: [] for name in AUDITED_TABLES}
        self.unknown: list[tuple[int, str]] = []               # (event id, table) we do not audit

    def add(self, event_id: int, payload_json: str) -> None:
        payload = json.loads(payload_json)
        if not isinstance(payload, dict):
            return
        for table, digests in (payload.get("row_digests") or {}).items():
            if table not in self.rows:
                self.unknown.append((event_id, table))
                continue
            expected = self.rows[table]
            for row_id, digest in digests.items():
                expected[int(row_id)] = (digest, event_id)
        for spec in payload.get("row_sets") or ():
            if spec.get("table") not in self.sets:
                self.unknown.append((event_id, str(spec.get("table"))))
                continue
            self.sets[spec["table"]].append(_SetCheck(event_id, spec))


def check(session: Session, expectations: Expectations) -> RowCheck:
    """Every audited table against `expectations`, in the caller's snapshot."""
    result = RowCheck()
    for event_id, table in expectations.unknown:
        result.report(RowProblem(table, 0, "unknown_table", event_id,
                                 f"event {event_id} names rows of {table!r}, a table verify does not check"))
    for name, table in AUDITED_TABLES.items():
        result.tables[name] = _check_table(session, table, expectations.rows[name],
                                           expectations.sets[name], result)
        result.rows_checked += result.tables[name]
    return result


def _check_table(session: Session, table: Table, singles: dict[int, tuple[str | None, int]],
                 sets: list["_SetCheck"], result: RowCheck) -> int:
    name = table.name
    ranges = sorted((first, last, row_set) for row_set in sets for first, last in row_set.ranges)
    position = read = 0
    statement = select(table).order_by(table.c.id).execution_options(yield_per=_READ_BATCH)
    for row in session.connection().execute(statement):
        read += 1
        row_id, digest = row.id, row_digest(row._mapping)
        while position < len(ranges) and ranges[position][1] < row_id:
            position += 1
        in_set = position < len(ranges) and ranges[position][0] <= row_id
        if in_set:
            ranges[position][2].feed(row_id, digest, name, result)
        single = singles.pop(row_id, None)
        if single is not None:
            _compare(name, row_id, digest, single, result)
        elif not in_set:
            result.report(RowProblem(name, row_id, "unaudited", None,
                                     f"{name} row {row_id} has no audit event (written behind the audit's back)"))
    for row_id, (expected, event_id) in sorted(singles.items()):
        if expected is not None:
            result.report(RowProblem(name, row_id, "removed", event_id,
                                     f"{name} row {row_id} is gone, audit event {event_id} recorded it"))
    for row_set in sets:
        row_set.finish(name, result)
    return read


def _compare(name: str, row_id: int, digest: str, single: tuple[str | None, int],
             result: RowCheck) -> None:
    expected, event_id = single
    if expected is None:
        result.report(RowProblem(name, row_id, "unaudited", event_id,
                                 f"{name} row {row_id} exists, audit event {event_id} recorded its removal"))
    elif expected != digest:
        result.report(RowProblem(name, row_id, "edited", event_id,
                                 f"{name} row {row_id} differs from audit event {event_id}"))


class _SetCheck:
    """One bulk load's rows, fed in id order: missing ids, and chunks that do not match."""

    def __init__(self, event_id: int, spec: dict[str, Any]) -> None:
        self.event_id = event_id
        self.ranges = [tuple(pair) for pair in spec["ids"]]
        self.chunks: list[str] = spec["chunks"]
        self.chunk_size = int(spec.get("chunk", CHUNK))
        self._ids = expand_ranges(self.ranges)
        self._next = next(self._ids, None)
        self._position = 0
        self._chunk = ChunkDigest()
        self._chunk_first: int | None = None
        self._chunk_missing = False

    def feed(self, row_id: int, digest: str, table: str, result: RowCheck) -> None:
        while self._next is not None and self._next < row_id:
            self._missing(table, result)
        if self._next == row_id:
            self._take(row_id, digest, table, result)

    def finish(self, table: str, result: RowCheck) -> None:
        while self._next is not None:
            self._missing(table, result)

    def _missing(self, table: str, result: RowCheck) -> None:
        result.report(RowProblem(table, self._next, "removed", self.event_id,
                                 f"{table} row {self._next} is gone, load event {self.event_id} wrote it"))
        self._chunk_missing = True
        self._take(self._next, "-", table, result)

    def _take(self, row_id: int, digest: str, table: str, result: RowCheck) -> None:
        if self._chunk_first is None:
            self._chunk_first = row_id
        self._chunk.add(digest)
        self._position += 1
        self._next = next(self._ids, None)
        if self._position % self.chunk_size == 0 or self._next is None:
            self._close_chunk(row_id, table, result)

    def _close_chunk(self, last_id: int, table: str, result: RowCheck) -> None:
        index = (self._position - 1) // self.chunk_size
        expected = self.chunks[index] if index < len(self.chunks) else None
        if self._chunk.hexdigest() != expected and not self._chunk_missing:
            result.report(RowProblem(
                table, self._chunk_first, "edited", self.event_id,
                f"a {table} row among ids {self._chunk_first}-{last_id} differs from load event "
                f"{self.event_id}", last_row_id=last_id))
        self._chunk, self._chunk_first, self._chunk_missing = ChunkDigest(), None, False
