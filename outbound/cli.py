"""The `outbound` command. Each command group lives in its own module under outbound/commands."""
from __future__ import annotations

import sys

import typer

from outbound.commands import register_all

# sysexits' EX_TEMPFAIL: nothing wrong with the command, try it again later.
EXIT_DATABASE_BUSY = 75


class _OutboundCommand(typer.Typer):
    """The Typer app, with one failure every command shares turned into a clear error: another
    process kept the database's write lock past the busy timeout (SQLite has one writer)."""

    def __call__(self, *args, **kwargs):
        from outbound.db import DatabaseBusy, is_database_busy

        try:
            return super().__call__(*args, **kwargs)
        except Exception as error:
            if not is_database_busy(error):
                raise
            message = error if isinstance(error, DatabaseBusy) else DatabaseBusy()
            print(f"error: {message}", file=sys.stderr)
            sys.exit(EXIT_DATABASE_BUSY)


app = _OutboundCommand(
    name="outbound",
    help="Outbound voice and SMS campaigns behind a deterministic compliance gate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
register_all(app)

if __name__ == "__main__":
    app()
