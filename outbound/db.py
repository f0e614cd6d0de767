"""The database engine, sessions and schema upgrades, for SQLite (default) and PostgreSQL.

Commands that need the database call `ensure_schema(engine)` first, so a fresh machine works
without a separate setup step; it is an Alembic `upgrade head`, which does nothing when the
schema is current.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, Table, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, create_engine

from outbound import migrations
from outbound.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# A writer waits this long for another writer's lock before SQLite reports "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 10_000
# `retry_on_busy` re-runs a whole write transaction that still found the lock taken, with a
# growing pause, for at most this long (on top of each attempt's own busy timeout).
WRITE_RETRY_SECONDS = 30.0
# What the API's 503 tells a client to wait before trying again.
BUSY_RETRY_AFTER_SECONDS = 5

_engines: dict[str, Engine] = {}


class DatabaseBusy(RuntimeError):
    """Another writer held the database's write lock for longer than the bound: try again soon.
    The API answers it 503 with Retry-After, the CLI with a clear message; never a crash."""

    def __init__(self, waited_seconds: float | None = None) -> None:
        waited = f" for {waited_seconds:.0f} s" if waited_seconds else ""
        super().__init__(f"the database is busy: another process held its write lock{waited} (a large list "
                         "import, a worker or a long command). Nothing was changed; try again in a few "
                         "seconds. If this happens often, move to PostgreSQL (OUTBOUND_DATABASE_URL), "
                         "which lets many writers work at once.")


def is_database_busy(error: BaseException) -> bool:
    """Whether `error` is another writer's lock (SQLite's SQLITE_BUSY/SQLITE_LOCKED, PostgreSQL's
    lock timeout), as opposed to a fault that retrying cannot fix."""
    if isinstance(error, DatabaseBusy):
        return True
    if not isinstance(error, OperationalError):
        return False
    original = error.orig
    code = getattr(original, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (5, 6)                   # SQLITE_BUSY, SQLITE_LOCKED (and extended codes)
    if getattr(original, "pgcode", None) == "55P03":    # lock_not_available (lock_timeout)
        return True
    message = str(original).lower()
    return "database is locked" in message or "database table is locked" in message


def retry_on_busy(write: Callable[[], T], *, what: str = "write", deadline_seconds: float = WRITE_RETRY_SECONDS,
                  sleep: Callable[[float], None] = time.sleep,
                  monotonic: Callable[[], float] = time.monotonic) -> T:
    """Run `write` (one whole transaction: it opens, commits or rolls back its own session) and
    run it again while it fails because another writer holds the lock, pausing 20 ms, 40 ms, ...
    up to 1 s (with jitter, so two waiting writers do not collide again) until `deadline_seconds`
    have passed; then raise DatabaseBusy. Any other error is raised at once."""
    started = monotonic()
    pause = 0.02
    while True:
        try:
            return write()
        except (OperationalError, DatabaseBusy) as error:
            if not is_database_busy(error):
                raise
            waited = monotonic() - started
            if waited + pause > deadline_seconds:
                raise DatabaseBusy(waited) from error
            log.warning("database busy during %s; retrying in %.2f s (waited %.1f s)", what, pause, waited)
            sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, 1.0)


def make_engine(url: str | URL, *, sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
                **engine_kwargs: Any) -> Engine:
    """A new engine for `url`. SQLite: the file's directory is created, WAL (readers do not block
    the writer), foreign keys enforced, and a busy timeout so concurrent writers queue instead of
    failing. PostgreSQL: connections are checked before use, so a restarted server costs no error."""
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        return _make_sqlite_engine(url, sqlite_busy_timeout_ms, **engine_kwargs)
    if url.get_driver_name() == "psycopg2":
        # Batched UPDATEs (a dispatch batch moves hundreds of attempts): one round trip per page
        # instead of one per row.
        engine_kwargs.setdefault("executemany_mode", "values_plus_batch")
    return create_engine(url, pool_pre_ping=True, **engine_kwargs)


def _make_sqlite_engine(url: URL, busy_timeout_ms: int, **engine_kwargs: Any) -> Engine:
    if _is_sqlite_file(url):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **engine_kwargs)

    @event.listens_for(engine, "connect")
    def _configure_connection(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if _is_sqlite_file(url):
                cursor.execute("PRAGMA journal_mode = WAL")    # persistent: stored in the file
        finally:
            cursor.close()

    return engine


def _is_sqlite_file(url: URL) -> bool:
    return bool(url.database) and url.database != ":memory:" and not url.database.startswith("file:")


def get_engine(url: str | None = None) -> Engine:
    """The process's engine for `url` (default: the configured OUTBOUND_DATABASE_URL), one per
    URL so every caller shares its connection pool."""
    settings = get_settings()
    if url is None:
        url = settings.database_url
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = make_engine(url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    return engine


def dispose_engines() -> None:
    """Close every cached engine's connections (tests, and processes that fork)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


@contextmanager
def session_scope(engine: Engine, *, expire_on_commit: bool = True) -> Iterator[Session]:
    """A session whose transaction commits when the block ends and rolls back if it raises.

    `expire_on_commit=False` for a session used once and thrown away: expiring every object it
    loaded is wasted work when nothing reads them after the commit."""
    with Session(engine, expire_on_commit=expire_on_commit) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def ensure_schema(engine: Engine) -> str | None:
    """Upgrade the database to the newest migration; returns the revision now current."""
    return migrations.upgrade_to_head(engine)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None when no migration was ever applied."""
    return migrations.current_revision(engine)


def masked_url(engine_or_url: Engine | str | URL) -> str:
    """The URL as it may be printed: the password, if any, replaced by ***."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.render_as_string(hide_password=True)


def insert_ignoring_duplicates(session: Session, table: Table, values: dict[str, Any]) -> bool:
    """INSERT `values` unless a row with the same key exists; True when a row was inserted.

    One statement on both backends (ON CONFLICT DO NOTHING), so two processes racing to create
    the same row (a rule-pack snapshot, the audit head) neither fail nor create it twice."""
    statement = _insert_ignoring_duplicates(session.get_bind().dialect.name, table)
    return session.execute(statement, values).rowcount == 1


@lru_cache(maxsize=64)
def _insert_ignoring_duplicates(dialect: str, table: Table):
    # Built once per table, its values bound at execution: a statement built with .values() per
    # call is compiled and cache-keyed again each time, which the audit head pays on every append.
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"insert_ignoring_duplicates: unsupported database {dialect!r}")
