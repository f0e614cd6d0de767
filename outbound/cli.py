"""The `outbound` command. Each command group lives in its own module under outbound/commands."""
from __future__ import annotations

import typer

from outbound.commands import register_all

app = typer.Typer(
    name="outbound",
    help="Outbound voice and SMS campaigns behind a deterministic compliance gate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
register_all(app)

if __name__ == "__main__":
    app()
