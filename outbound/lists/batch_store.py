"""Storing an import's batches of contacts and rejects, on a writer thread of its own.

Parsing runs on the caller's thread and storing on the writer's, so the two overlap on two
cores. That only works if the writer rarely needs the GIL: the sqlite3 driver releases it around
every `sqlite3_step` and must take it back afterwards. Once a step outlasts a thread's wake-up (as
inserts into a large table do), the busy parser takes the GIL meanwhile, and the writer waits up
to the switch interval (5 ms) to get it back: with `executemany`, one wait per row. Measured on
1M rows: 22.8 s of wall time for 22.2 s of CPU, no overlap at all; the writer only ran while the
parser waited for it.

On SQLite a batch therefore goes in as one statement: the rows are JSON-encoded on the parser's
thread and `INSERT ... SELECT ... FROM json_each(?)` stores them all in one step with the GIL
released. Other databases (PostgreSQL), an SQLite without JSON functions, and a batch holding a
NUL character (SQLite's JSON functions cut text at a NUL) take `executemany`, which stores the
same values.

Other writers get in between: SQLite has one writer at a time, and an import holding the write
lock for a 100k-row transaction kept `POST /v1/campaigns` and the worker waiting past their busy
timeout. A transaction (a *slice*) is therefore committed after SLICE_SECONDS of holding the
lock as well as after COMMIT_ROWS rows, and the writer then leaves the lock free for
SLICE_GAP_SECONDS, long enough for a writer polling in its busy handler to take it. While the
parser is the slower side (the usual case) the gap costs nothing: the writer would be waiting
for the next batch anyway. `BatchWriter.lock_holds` records how long each slice held the lock.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from outbound.db import retry_on_busy
from outbound.models import Contact, ImportReject

log = logging.getLogger(__name__)

# Bound once per import (every row of an import shares them), then the columns of each row, in
# the order of the tuples in `Batch.contacts`.
CONTACT_CONSTANT_COLUMNS = ("campaign_id", "import_id", "created_at")
CONTACT_ROW_COLUMNS = ("e164", "phone_raw", "first_name", "last_name", "email", "zip", "state",
                       "line_type", "timezones", "states", "attributes", "source_line")
REJECT_ROW_COLUMNS = ("line", "reason", "row")
# A transaction per 100k rows, not per batch: each commit writes every index page it dirtied,
# and random numbers dirty most of them, so small commits multiply the pages written.
COMMIT_ROWS = 100_000
# ... and at least this often (seconds the write lock was held), so that other writers (the API,
# the worker) wait at most about this long (plus one batch) for an import.
SLICE_SECONDS = 0.5
# The lock left free after each slice: SQLite's busy handler polls a waiting writer every 25 to
# 100 ms, so a gap of 20 ms is found within a few slices.
SLICE_GAP_SECONDS = 0.02
WRITE_QUEUE_BATCHES = 2          # batches parsed ahead of the writer: bounds memory
SQLITE_IMPORT_CACHE_KIB = 128 * 1024
SQLITE_IMPORT_CHECKPOINT_PAGES = 25_000   # about 100 MB of WAL between checkpoints during an import
_E164_OF_ROW = itemgetter(CONTACT_ROW_COLUMNS.index("e164"))
# What json.dumps writes for a NUL (ensure_ascii=False escapes only controls, quotes and
# backslashes). A literal backslash-u0000 in a cell matches too; it merely takes the slow path.
_JSON_NUL = "\\u0000"


@dataclass
class Batch:
    contacts: list[tuple] = field(default_factory=list)     # CONTACT_ROW_COLUMNS values
    rejects: list[tuple] = field(default_factory=list)      # (line, reason, row as a dict)
    rows: int = 0


@dataclass(frozen=True)
class ImportConstants:
    campaign_id: int
    import_id: int
    created_at: object          # as the column type binds it for this driver

    def values(self) -> tuple:
        return self.campaign_id, self.import_id, self.created_at


class BatchWriter:
    """Stores batches on a thread of its own, on one connection, committing every COMMIT_ROWS
    rows or SLICE_SECONDS of holding the lock. `put` encodes the batch on the caller's thread (see
    the module's docstring); an error on the writer is raised on the caller's thread at its next
    `put` or at `close`."""

    def __init__(self, engine: Engine, constants: ImportConstants, *, slice_seconds: float | None = None,
                 slice_gap_seconds: float | None = None) -> None:
        self._engine = engine
        if engine.dialect.name != "sqlite":
            # PostgreSQL locks rows, not the database: a long transaction keeps nobody waiting.
            slice_seconds, slice_gap_seconds = float("inf"), 0.0
        self._slice_seconds = SLICE_SECONDS if slice_seconds is None else slice_seconds
        self._slice_gap_seconds = SLICE_GAP_SECONDS if slice_gap_seconds is None else slice_gap_seconds
        self.lock_holds: list[float] = []      # seconds each committed slice held the write lock
        self._statements = _Statements(engine, constants)
        self._queue: queue.Queue[_Encoded | None] = queue.Queue(maxsize=WRITE_QUEUE_BATCHES)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="list-import-writer", daemon=True)
        self._thread.start()

    def put(self, batch: Batch) -> None:
        encoded = self._statements.encode(batch)
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(encoded, timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Waits until every batch put is stored (or the writer failed), then raises its error."""
        self.stop()
        self._raise_if_failed()
        if self.lock_holds:
            log.info("list import: %d transactions, the longest held the write lock %.0f ms",
                     len(self.lock_holds), 1000 * max(self.lock_holds))

    def stop(self) -> None:
        """Waits for the writer to finish what it was given, without raising its error."""
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.2)
                break
            except queue.Full:
                continue
        self._thread.join()

    def _run(self) -> None:
        try:
            with self._engine.connect() as connection, _bulk_load_cache(connection):
                store = self._statements.store_with(connection)
                transaction, uncommitted, locked_at = None, 0, 0.0
                while (encoded := self._queue.get()) is not None:
                    if transaction is None:
                        transaction, locked_at = self._begin_slice(connection, store, encoded)
                    else:
                        store(encoded)
                    uncommitted += encoded.rows
                    if uncommitted >= COMMIT_ROWS or time.monotonic() - locked_at >= self._slice_seconds:
                        self._commit_slice(transaction, locked_at)
                        transaction, uncommitted = None, 0
                if transaction is not None:
                    self._commit_slice(transaction, locked_at)
        except BaseException as error:    # handed to the caller's thread
            self._error = error

    def _begin_slice(self, connection, store, encoded: _Encoded):
        """A new transaction whose first batch is stored: that is when the write lock is taken,
        so when another writer holds it past the busy timeout, the slice (nothing of it stored
        yet) is begun again, within retry_on_busy's bound."""
        def first_store():
            transaction, started = connection.begin(), time.monotonic()
            try:
                store(encoded)
            except BaseException:
                transaction.rollback()
                raise
            return transaction, started
        return retry_on_busy(first_store, what="list import")

    def _commit_slice(self, transaction, locked_at: float) -> None:
        transaction.commit()
        self.lock_holds.append(time.monotonic() - locked_at)
        if self._slice_gap_seconds:
            time.sleep(self._slice_gap_seconds)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error


@dataclass(frozen=True)
class _Encoded:
    """A batch as the writer stores it: JSON texts for SQLite's json_each, or the batch itself."""

    rows: int
    contacts_json: str | None = None
    rejects_json: str | None = None
    batch: Batch | None = None


class _Statements:
    """The INSERTs of one import and the form of the batches they take."""

    def __init__(self, engine: Engine, constants: ImportConstants) -> None:
        self._constants = constants.values()
        self._serialise_row = _json_bind(engine, ImportReject.__table__.c.row)
        self._json_each = _json_each_capable(engine)
        self._contacts_many = insert_contacts_sql(engine)
        self._rejects_many = _insert_sql(engine, ImportReject.__tablename__, ("import_id", *REJECT_ROW_COLUMNS))
        self._contacts_json = json_each_insert_sql(Contact.__tablename__, CONTACT_CONSTANT_COLUMNS,
                                                   CONTACT_ROW_COLUMNS, "ON CONFLICT (campaign_id, e164) DO NOTHING")
        self._rejects_json = json_each_insert_sql(ImportReject.__tablename__, ("import_id",), REJECT_ROW_COLUMNS)
        self._encode_json = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode

    def encode(self, batch: Batch) -> _Encoded:
        # Sorted by E.164, the index inserts walk the B-trees in order (a quarter less work);
        # the sort is stable, so the first of two equal numbers is still the one stored.
        batch.contacts.sort(key=_E164_OF_ROW)
        rejects = [(line, reason, self._serialise_row(row)) for line, reason, row in batch.rejects]
        if not self._json_each:
            return _Encoded(rows=batch.rows, batch=Batch(batch.contacts, rejects, batch.rows))
        contacts_json = self._encode_json(batch.contacts) if batch.contacts else None
        rejects_json = self._encode_json(rejects) if rejects else None
        if _JSON_NUL in (contacts_json or "") or _JSON_NUL in (rejects_json or ""):
            return _Encoded(rows=batch.rows, batch=Batch(batch.contacts, rejects, batch.rows))
        return _Encoded(rows=batch.rows, contacts_json=contacts_json, rejects_json=rejects_json)

    def store_with(self, connection):
        """A function storing encoded batches on `connection`, inside its transaction, through
        the driver's own cursor: SQLAlchemy's per-row parameter processing (JSON, datetimes)
        cost more than the inserts themselves, so rows are already in the columns' stored form."""
        def store(encoded: _Encoded) -> None:
            cursor = connection.connection.cursor()
            try:
                if encoded.batch is not None:
                    self._store_many(cursor, encoded.batch)
                    return
                if encoded.contacts_json is not None:
                    cursor.execute(self._contacts_json, (*self._constants, encoded.contacts_json))
                if encoded.rejects_json is not None:
                    cursor.execute(self._rejects_json, (self._constants[1], encoded.rejects_json))
            finally:
                cursor.close()
        return store

    def _store_many(self, cursor, batch: Batch) -> None:
        constants, import_id = self._constants, self._constants[1]
        if batch.contacts:
            cursor.executemany(self._contacts_many, [constants + row for row in batch.contacts])
        if batch.rejects:
            cursor.executemany(self._rejects_many, [(import_id, *reject) for reject in batch.rejects])


def insert_contacts_sql(engine: Engine) -> str:
    """INSERT of one contact row in the driver's own placeholders. ON CONFLICT ... DO NOTHING is
    the same words on SQLite (3.24+) and PostgreSQL."""
    return _insert_sql(engine, Contact.__tablename__, (*CONTACT_CONSTANT_COLUMNS, *CONTACT_ROW_COLUMNS),
                       "ON CONFLICT (campaign_id, e164) DO NOTHING")


def _insert_sql(engine: Engine, table: str, columns: Sequence[str], suffix: str = "") -> str:
    placeholder = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(engine.dialect.paramstyle)
    if placeholder is None or engine.dialect.name not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"contact import: unsupported database {engine.dialect.name!r}")
    return (f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join([placeholder] * len(columns))}) {suffix}").rstrip()


def json_each_insert_sql(table: str, constant_columns: Sequence[str], row_columns: Sequence[str],
                         suffix: str = "") -> str:
    """SQLite: INSERT of every row of a JSON array of rows, the constants bound first. The
    `WHERE true` keeps SQLite from reading ON CONFLICT as a join constraint of the SELECT."""
    values = [*(["?"] * len(constant_columns)),
              *(f"json_extract(value, '$[{i}]')" for i in range(len(row_columns)))]
    return (f"INSERT INTO {table} ({', '.join((*constant_columns, *row_columns))}) "
            f"SELECT {', '.join(values)} FROM json_each(?) WHERE true {suffix}").rstrip()


def _json_each_capable(engine: Engine) -> bool:
    """Whether this is SQLite with its JSON functions (built in since 3.38, an option before)."""
    if engine.dialect.name != "sqlite":
        return False
    try:
        with engine.connect() as connection:
            probe = "SELECT json_extract(value, '$[0]') FROM json_each('[[1]]')"
            return connection.exec_driver_sql(probe).one() == (1,)
    except DBAPIError:
        return False


def _json_bind(engine: Engine, column):
    """The text a JSON column stores for a value, exactly as SQLAlchemy would bind it."""
    processor = column.type.bind_processor(engine.dialect)
    return processor if processor else json.dumps


@contextmanager
def _bulk_load_cache(connection) -> Iterator[None]:
    """On SQLite, a page cache that holds the contact indexes while they grow: with the default
    2 MB, random E.164 inserts spill and re-read index pages, and an import runs 40% slower."""
    if connection.dialect.name != "sqlite":
        yield
        return
    default = connection.exec_driver_sql("PRAGMA cache_size").scalar()
    checkpoint_default = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
    connection.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_IMPORT_CACHE_KIB}")
    # Slices are short (see SLICE_SECONDS), and each commit past 1,000 WAL pages would copy the
    # pages it wrote into the database file at once; the next slice dirties most of them again.
    connection.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {SQLITE_IMPORT_CHECKPOINT_PAGES}")
    connection.commit()         # the PRAGMAs opened SQLAlchemy's implicit transaction
    try:
        yield
    finally:
        connection.rollback()
        connection.exec_driver_sql(f"PRAGMA cache_size = {int(default)}")
        connection.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {int(checkpoint_default)}")
        connection.commit()
