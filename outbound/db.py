"""The database engine, sessions and schema upgrades, for SQLite (default) and PostgreSQL.

Commands that need the database call `ensure_schema(engine)` first, so a fresh machine works
without a separate setup step; it is an Alembic `upgrade head`, which does nothing when the
schema is current.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlmodel import Session, create_engine

from outbound import migrations
from outbound.settings import get_settings

# A writer waits this long for another writer's lock before SQLite reports "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 10_000

_engines: dict[str, Engine] = {}


def make_engine(url: str | URL, **engine_kwargs: Any) -> Engine:
    """A new engine for `url`. SQLite: the file's directory is created, WAL (readers do not block
    the writer), foreign keys enforced, and a busy timeout so concurrent writers queue instead of
    failing. PostgreSQL: connections are checked before use, so a restarted server costs no error."""
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        return _make_sqlite_engine(url, **engine_kwargs)
    if url.get_driver_name() == "psycopg2":
        # Batched UPDATEs (a dispatch batch moves hundreds of attempts): one round trip per page
        # instead of one per row.
        engine_kwargs.setdefault("executemany_mode", "values_plus_batch")
    return create_engine(url, pool_pre_ping=True, **engine_kwargs)


def _make_sqlite_engine(url: URL, **engine_kwargs: Any) -> Engine:
    if _is_sqlite_file(url):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **engine_kwargs)

    @event.listens_for(engine, "connect")
    def _configure_connection(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
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
    if url is None:
        url = get_settings().database_url
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = make_engine(url)
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
