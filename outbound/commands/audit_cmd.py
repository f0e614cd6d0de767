"""`outbound audit`: verify the keyed hash chain and the fact rows it vouches for, print the
head as an anchor to keep outside the system, and show recent events."""
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
def verify(
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    anchor: str | None = typer.Option(None, "--anchor", metavar="ID:HASH",
                                      help="A head printed earlier by `outbound audit anchor`: "
                                           "also prove that nothing up to that event changed."),
) -> None:
    """Check every link of the chain, then every consent, revocation, business-relationship and
    DNC row against its audit event; exit 1 on any problem."""
    try:
        parsed = audit.Anchor.parse(anchor) if anchor is not None else None
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--anchor") from None
    engine = get_engine()
    ensure_schema(engine)
    with Session(engine) as session:
        result = audit.verify(session, anchor=parsed)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
    elif result.broken is None:
        console.print(f"[green]audit chain intact: {result.events_checked} events verified[/green]"
                      + (f"[green], anchor {parsed.id} matches[/green]" if parsed else ""),
                      highlight=False, soft_wrap=True)
        _print_rows(result.rows)
    else:
        _print_broken(result)
    raise typer.Exit(0 if result.ok else 1)


@audit_app.command("anchor")
def anchor(as_json: bool = typer.Option(False, "--json", help='Print {"id": ..., "hash": ...}.')) -> None:
    """Print the head of the chain as ID:HASH. Keep it outside this system (a ticket, a signed
    report): `outbound audit verify --anchor ID:HASH` later proves nothing up to it changed,
    even for someone holding the audit key."""
    engine = get_engine()
    ensure_schema(engine)
    with Session(engine) as session:
        head = audit.head(session)
    if head is None:
        typer.echo("the audit log is empty: nothing to anchor yet", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps({"id": head.id, "hash": head.hash}) if as_json else str(head))


def _print_rows(rows) -> None:
    if rows is None:
        return
    if rows.ok:
        console.print(f"[green]fact rows intact: {rows.rows_checked} rows match their audit events[/green]",
                      highlight=False, soft_wrap=True)
        return
    console.print(f"[red]fact rows changed outside the audit: {rows.problems_total} problem(s) in "
                  f"{rows.rows_checked} rows[/red]", highlight=False, soft_wrap=True)
    for problem in rows.problems:
        console.print(f"  {problem.problem}: {problem.detail}", highlight=False, soft_wrap=True)
    if rows.problems_total > len(rows.problems):
        console.print(f"  … and {rows.problems_total - len(rows.problems)} more (see --json)",
                      highlight=False, soft_wrap=True)


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
