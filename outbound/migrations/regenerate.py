"""Regenerate the initial migration, versions/0001_initial.py, from the current models.

    .venv/bin/python -m outbound.migrations.regenerate

Autogenerates against an empty temporary SQLite database, so the file creates every table,
index and constraint of `SQLModel.metadata` and its downgrade drops them. Only valid while 0001
is the only migration (before a release); after that, add a new revision instead:

    .venv/bin/python -m outbound.migrations.regenerate --new "add column x"

Then run `pytest tests/test_storage.py`: it checks that the migrated schema equals the models on
SQLite and PostgreSQL.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from alembic import command

from outbound.db import make_engine
from outbound.migrations import MIGRATIONS_DIR, alembic_config, upgrade_to_head

INITIAL_REVISION = "0001"
INITIAL_FILE = MIGRATIONS_DIR / "versions" / "0001_initial.py"


def _version_files() -> list[Path]:
    return sorted(p for p in (MIGRATIONS_DIR / "versions").glob("*.py") if p.name != "__init__.py")


def regenerate_initial() -> Path:
    others = [p.name for p in _version_files() if p != INITIAL_FILE]
    if others:
        raise SystemExit(f"refusing to regenerate 0001: later migrations exist ({', '.join(others)}); "
                         "add a new revision with --new instead")
    INITIAL_FILE.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'empty.db'}")
        try:
            with engine.begin() as connection:
                config = alembic_config(connection)
                config.attributes["render_as_batch"] = False   # creates only: no table copies
                command.revision(config, message="initial", autogenerate=True,
                                 rev_id=INITIAL_REVISION)
        finally:
            engine.dispose()
    return INITIAL_FILE


def new_revision(message: str) -> Path:
    """A new revision holding the difference between the models and the migrated schema."""
    rev_id = f"{len(_version_files()) + 1:04d}"
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'current.db'}")
        try:
            upgrade_to_head(engine)
            with engine.begin() as connection:
                script = command.revision(alembic_config(connection), message=message,
                                          autogenerate=True, rev_id=rev_id)
        finally:
            engine.dispose()
    return Path(script.path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m outbound.migrations.regenerate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--new", metavar="MESSAGE",
                        help="add a new revision instead of regenerating 0001")
    args = parser.parse_args(argv)
    path = new_revision(args.new) if args.new else regenerate_initial()
    print(f"wrote {path}")
    print("review it, then run: .venv/bin/pytest tests/test_storage.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
