"""Alembic environment: migrates the connection handed over in `config.attributes`.

The target metadata is `SQLModel.metadata` after importing `outbound.models`, which also imports
`consent.tables`, so every table of the product is compared and created.

To regenerate the initial migration after a model change (while 0001 is the only one):

    .venv/bin/python -m outbound.migrations.regenerate

Column types are rendered as plain SQLAlchemy types (see `render_item`), so a migration never
imports project code and keeps working if a type moves or changes.
"""
from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

import outbound.models  # noqa: F401  (registers every table in SQLModel.metadata)
from consent.sqltypes import UTCDateTime

config = context.config
target_metadata = SQLModel.metadata


def render_item(type_: str, obj, autogen_context):
    """Render project column types as the database types they stand for."""
    if type_ != "type":
        return False
    if isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def _configure_options(dialect_name: str) -> dict:
    # SQLite can alter a table only by copying it; batch mode does that for later migrations.
    # The initial migration only creates, so regenerate.py turns batch mode off for it.
    render_as_batch = config.attributes.get("render_as_batch", dialect_name == "sqlite")
    return {
        "target_metadata": target_metadata,
        "render_item": render_item,
        "compare_type": True,
        "render_as_batch": render_as_batch,
    }


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("outbound migrations run on a connection: use outbound.migrations."
                           "upgrade_to_head(engine) or `outbound db upgrade`, not the alembic CLI")
    context.configure(connection=connection, **_configure_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """`--sql` mode: print the DDL for the URL's dialect instead of running it."""
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("offline migrations need a URL: alembic_config(url=...)")
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"},
                      **_configure_options(url.split(":", 1)[0].split("+", 1)[0]))
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
