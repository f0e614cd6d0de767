"""`outbound db`: bring the schema up to date and show where it stands."""
from __future__ import annotations

import json

import typer
from rich.console import Console

from outbound.db import current_revision, ensure_schema, get_engine, masked_url
from outbound.migrations import head_revision

db_app = typer.Typer(help="Database schema: upgrade and current revision.", no_args_is_help=True)
console = Console()


@db_app.command("upgrade")
def upgrade() -> None:
    """Apply every pending migration (safe to run again: it does nothing when current)."""
    engine = get_engine()
    revision = ensure_schema(engine)
    console.print(f"[green]database at revision {revision}[/green] ({masked_url(engine)})",
                  highlight=False, soft_wrap=True)


@db_app.command("current")
def current(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Show the revision the database is at and the newest one this code ships."""
    engine = get_engine()
    revision, head = current_revision(engine), head_revision()
    if as_json:
        typer.echo(json.dumps({"revision": revision, "head": head, "url": masked_url(engine),
                               "up_to_date": revision == head}))
        return
    state = "[green]up to date[/green]" if revision == head else \
        f"[yellow]behind: run `outbound db upgrade` to reach {head}[/yellow]"
    console.print(f"database at revision {revision or '(none)'} ({masked_url(engine)}): {state}",
                  highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
