"""Alembic migrations of the schema, shipped inside the package.

The Alembic `Config` is built here, in code, so no alembic.ini is needed: the migrations run
against the connection of the engine they are given, which lets tests migrate a temporary SQLite
file or a per-test PostgreSQL schema (reached through `search_path`).

Regenerate the initial migration after changing the models (see README in this folder):

    .venv/bin/python -m outbound.migrations.regenerate
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, text

MIGRATIONS_DIR = Path(__file__).resolve().parent

# Any constant works; it names the PostgreSQL advisory lock that makes concurrent upgrades
# (several workers starting at once on a fresh database) run one after the other.
_UPGRADE_LOCK_KEY = 0x6F7574626F756E64  # "outbound"


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """A Config for the migrations in this package; env.py migrates `connection` when given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def upgrade_to_head(engine: Engine) -> str | None:
    """Apply every migration not yet applied; idempotent. Returns the revision now current."""
    with engine.begin() as connection:
        _serialise_schema_changes(connection)
        command.upgrade(alembic_config(connection), "head")
        return _revision_of(connection)


def downgrade_to(engine: Engine, revision: str = "base") -> str | None:
    """Revert migrations down to `revision` ("base" drops every table)."""
    with engine.begin() as connection:
        _serialise_schema_changes(connection)
        command.downgrade(alembic_config(connection), revision)
        return _revision_of(connection)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None when no migration was ever applied."""
    with engine.connect() as connection:
        return _revision_of(connection)


def head_revision() -> str | None:
    """The newest revision shipped with this code."""
    from alembic.script import ScriptDirectory
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _serialise_schema_changes(connection: Connection) -> None:
    # Two processes upgrading a fresh database at once would both see "no tables" and both try
    # to create them. PostgreSQL: an advisory lock held until this transaction ends. SQLite:
    # take the write lock before Alembic reads the version table (the other process waits for
    # it through busy_timeout, then finds the schema current).
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK_KEY})
    elif connection.dialect.name == "sqlite" and not connection.connection.dbapi_connection.in_transaction:
        # pysqlite opens its own (deferred) transaction only at the first write; opening one
        # here first makes the DBAPI commit at the end of engine.begin() end ours.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
