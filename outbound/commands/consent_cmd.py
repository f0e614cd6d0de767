"""`outbound consent`: import consent records, revocations and business relationships; show the
history of a phone and the consent the gate would rely on; record an opt-out by hand."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlmodel import Session

from consent import records
from consent.ledger_io import RevocationVia, load_path
from consent.types import Channel, Purpose
from outbound import audit
from outbound.db import ensure_schema, get_engine, session_scope
from outbound.commands.cli_context import default_actor, now

consent_app = typer.Typer(help="The consent ledger: consent, revocations, business relationships.",
                          no_args_is_help=True)
console = Console()
# Exit status when some input could not be used, as for `outbound gate check`.
EXIT_INVALID = 2


def _fail(message: str) -> None:
    console.print(f"[red]{escape(message)}[/red]", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_INVALID)


# --- import -----------------------------------------------------------------------------------

@consent_app.command("import")
def import_file(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="CSV, JSON array or JSON Lines; a `type` column may mix "
                                           "consent, revocation and business_relationship rows."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    actor: str = typer.Option(None, "--actor", help="Who is loading the file (default: cli:$USER)."),
) -> None:
    """Load a ledger file; bad rows are reported with their line and reason, good rows still load.

    Exit status 0 when every row loaded, 2 when any row (or the file) was rejected.
    """
    loaded = load_path(file)
    engine = get_engine()
    ensure_schema(engine)
    with session_scope(engine) as session:
        summary = records.import_loaded(session, loaded, source=str(file), actor=actor or default_actor(),
                                        at=now(), audit=audit.append)
    if as_json:
        typer.echo(json.dumps(summary.as_dict(), ensure_ascii=False))
    else:
        _print_summary(file, summary)
    raise typer.Exit(EXIT_INVALID if summary.rejected else 0)


def _print_summary(file: Path, summary: records.ImportSummary) -> None:
    loaded = ", ".join(f"{count} {kind}" for kind, count in summary.loaded.items())
    unchanged = sum(summary.unchanged.values())
    console.print(f"{escape(str(file))}: loaded {loaded}"
                  + (f"; {unchanged} already on file" if unchanged else "")
                  + f"; rejected {summary.rejected}", highlight=False, soft_wrap=True)
    for error in summary.errors:
        where = f"line {error.line}" if error.line else "file"
        console.print(f"  [red]{where}:[/red] {escape(error.reason)}", highlight=False, soft_wrap=True)


# --- show -------------------------------------------------------------------------------------

@consent_app.command("show")
def show(
    phone: str = typer.Argument(..., help="The phone, in any NANP format."),
    as_json: bool = typer.Option(False, "--json", help="Print history and reliance as one JSON object."),
    channel: Channel = typer.Option(None, "--channel", help="Only this channel in the reliance lines."),
    purpose: Purpose = typer.Option(None, "--purpose", help="Only this purpose in the reliance lines."),
    seller: str = typer.Option(None, "--seller", help="Only this seller's consents: what its campaigns rely on."),
) -> None:
    """The whole history of a phone in time order, each consent's seller, evidence and standing
    now (active, expired, revoked on ..., superseded), and the record the gate would rely on now."""
    engine = get_engine()
    ensure_schema(engine)
    with Session(engine) as session:
        try:
            view = records.ledger_view(session, phone, now(),
                                       channels=[channel] if channel else tuple(Channel),
                                       purposes=[purpose] if purpose else tuple(Purpose), seller=seller)
        except records.InvalidPhone as error:
            _fail(str(error))
    if as_json:
        typer.echo(json.dumps(view.as_dict(), ensure_ascii=False))
        return
    _print_view(view)


def _print_view(view: records.LedgerView) -> None:
    if not view.events:
        console.print(f"nothing on file for {view.phone}", highlight=False)
    else:
        table = Table(title=f"consent ledger of {view.phone}", title_justify="left")
        table.add_column("at (UTC)", no_wrap=True)
        table.add_column("event", overflow="fold", max_width=16)
        table.add_column("detail", overflow="fold", min_width=20, ratio=1)
        table.add_column("by", overflow="fold", min_width=8)
        for event in view.events:
            table.add_row(_iso(event.at), f"{event.event}\n{event.record}", escape(_detail_text(event.detail)),
                          escape(event.recorded_by))
        console.print(table)
    _print_standings(view)
    console.print(f"relied on now ({_iso(view.at)})" + (f" for {escape(view.seller)}" if view.seller else "") + ":",
                  highlight=False)
    for reliance in view.reliance:
        colour = "green" if reliance.grant else "red"
        seller = f"; seller {reliance.grant.seller}" if reliance.grant and reliance.grant.seller else ""
        console.print(f"  {reliance.channel.value} {reliance.purpose.value} ({reliance.need.value} needed): "
                      f"[{colour}]{escape(reliance.reason + seller)}[/{colour}]", highlight=False, soft_wrap=True)


STATUS_COLOURS = {"active": "green", "revoked": "red", "expired": "yellow"}


def _print_standings(view: records.LedgerView) -> None:
    if not view.consents:
        return
    table = Table(title=f"consents now ({_iso(view.at)})", title_justify="left")
    for name, options in (("#", {"no_wrap": True}), ("seller", {"overflow": "fold"}),
                          ("kind · channels · purposes", {"overflow": "fold"}),
                          ("evidence", {"overflow": "fold", "ratio": 1}), ("status", {"overflow": "fold"})):
        table.add_column(name, **options)
    for standing in view.consents:
        record = standing.record
        colour = STATUS_COLOURS.get(standing.status, "dim")
        table.add_row(str(record.id), escape(record.seller), f"{record.kind} · {record.channels} · {record.purposes}",
                      escape(_detail_text(record.evidence or {})) or "none",
                      f"[{colour}]{standing.status}[/{colour}]\n{escape(standing.detail)}")
    console.print(table)


def _iso(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def _detail_text(detail: dict) -> str:
    parts = []
    for name, value in detail.items():
        if value in (None, [], {}):
            continue
        if isinstance(value, list):
            value = " ".join(value)
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        parts.append(f"{name}: {value}")
    return "; ".join(parts)


# --- revoke -----------------------------------------------------------------------------------

def _parse_channels(text: str) -> list[Channel]:
    names = [part.strip() for part in text.replace(";", ",").replace(" ", ",").split(",") if part.strip()]
    if not names:
        _fail("--channels: name at least one of voice, sms")
    try:
        return [Channel(name) for name in names]
    except ValueError:
        _fail(f"--channels: unknown channel in {text!r}; use voice, sms or voice,sms")


def _parse_instant(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"{option}: not an ISO 8601 instant: {text!r} (example: 2026-07-10T12:00:00Z)")
    if instant.tzinfo is None:
        _fail(f"{option}: {text!r} has no time zone: add Z or an offset such as -05:00")
    return instant


@consent_app.command("revoke")
def revoke(
    phone: str = typer.Argument(..., help="The phone, in any NANP format."),
    channels: str = typer.Option("voice,sms", "--channels", help="Channels revoked, e.g. voice,sms."),
    via: RevocationVia = typer.Option(RevocationVia.AGENT, "--via", help="How the opt-out reached us."),
    received_at: str = typer.Option(None, "--received-at", help="When it was received (default: now)."),
    note: str = typer.Option(None, "--note", help="Free text kept with the revocation."),
    actor: str = typer.Option(None, "--actor", help="Who records it (default: cli:$USER)."),
    as_json: bool = typer.Option(False, "--json", help="Print the stored revocation as JSON."),
) -> None:
    """Record an opt-out now; it is committed before the command returns."""
    chosen = _parse_channels(channels)
    at = now()
    received = _parse_instant(received_at, "--received-at") or at
    engine = get_engine()
    ensure_schema(engine)
    with session_scope(engine) as session:
        try:
            stored = records.revoke(session, phone, chosen, via, received, actor=actor or default_actor(),
                                    at=at, audit=audit.append, note=note)
        except records.LedgerError as error:
            _fail(str(error))
        result = records.revocation_as_dict(stored.row)
    if as_json:
        typer.echo(json.dumps({**result, "created": stored.created}, ensure_ascii=False))
        return
    state = "recorded" if stored.created else "already on file"
    console.print(f"[green]revocation#{result['id']} {state}[/green]: {result['phone']} "
                  f"{' '.join(result['channels'])} via {result['via']} at {result['received_at']}",
                  highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(consent_app, name="consent")
