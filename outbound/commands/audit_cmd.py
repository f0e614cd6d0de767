"""`outbound audit`: verify the hash chain and show recent events."""
from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table
from sqlmodel import Session

from outbound import audit
from outbound.audit import iso_utc
from outbound.db import ensure_schema, get_engine

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
console = Console()


@audit_app.command("verify")
def verify(as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Check every link of the chain; exit 1 at the first broken one."""
    engine = get_engine()
    ensure_schema(engine)
    with Session(engine) as session:
        result = audit.verify(session)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
    elif result.ok:
        console.print(f"[green]audit chain intact: {result.events_checked} events verified[/green]",
                      highlight=False, soft_wrap=True)
    else:
        _print_broken(result)
    raise typer.Exit(0 if result.ok else 1)


def _print_broken(result: audit.VerifyResult) -> None:
    broken = result.broken
    console.print(f"[red]audit chain broken at event {broken.event_id}: {broken.reason}[/red]",
                  highlight=False, soft_wrap=True)
    if broken.expected_hash or broken.found_hash:
        console.print(f"  expected hash {broken.expected_hash}\n  found hash    {broken.found_hash}",
                      highlight=False, soft_wrap=True)
    console.print(f"  {result.events_checked} events before it verified intact", highlight=False, soft_wrap=True)


@audit_app.command("tail")
def tail(
    count: int = typer.Option(20, "-n", "--count", min=1, help="How many of the latest events."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per line."),
) -> None:
    """Show the most recent events: who did what, when."""
    engine = get_engine()
    ensure_schema(engine)
    with Session(engine) as session:
        events = audit.recent_events(session, count)
    if as_json:
        for event in events:
            typer.echo(json.dumps(_event_dict(event), ensure_ascii=False))
        return
    table = Table("id")
    table.add_column("at (UTC)", no_wrap=True)
    table.add_column("actor")
    table.add_column("action", no_wrap=True)
    table.add_column("subject")
    table.add_column("payload", overflow="fold")
    for event in events:
        table.add_row(str(event.id), iso_utc(event.at), event.actor, event.action,
                      event.subject or "", event.payload)
    console.print(table)


def _event_dict(event) -> dict:
    return {"id": event.id, "at": iso_utc(event.at), "actor": event.actor, "action": event.action,
            "subject": event.subject, "payload": _payload(event.payload),
            "prev_hash": event.prev_hash, "hash": event.hash}


def _payload(text: str):
    # Shown as stored: a tampered row whose payload is no longer JSON must still be listable.
    try:
        return json.loads(text)
    except ValueError:
        return text


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
