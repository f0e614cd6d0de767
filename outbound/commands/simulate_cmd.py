"""`outbound simulate`: a dry run of a campaign over simulated time; sends and stores nothing."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

EXIT_INVALID = 2


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)


def simulate_command(campaign: str = typer.Argument(..., help="campaign name or id"),
                     start: str | None = typer.Option(None, "--start",
                                                      help="simulated start, ISO 8601 with zone (default: now)"),
                     days: int = typer.Option(7, "--days", min=1, max=366, help="how many days to simulate"),
                     as_json: bool = typer.Option(False, "--json", help="print one JSON object")) -> None:
    """What the gate would allow, defer and block (by reason, state, local hour), and when the
    list would be exhausted. DST and holidays come from the real rules; nothing is sent."""
    from consent.registry_store import RegistryStore
    from consent.rules import load_pack
    from outbound.campaigns import CampaignNotFound
    from outbound.db import ensure_schema, get_engine
    from outbound.settings import get_settings
    from scheduler.simulate import simulate

    err = Console(stderr=True)
    try:
        start_at = _start_instant(start)
    except ValueError:
        err.print(f"[red]--start:[/red] {start!r} is not an ISO 8601 instant with a zone (e.g. 2026-11-02T13:00:00Z)")
        raise typer.Exit(EXIT_INVALID) from None
    engine = get_engine()
    ensure_schema(engine)
    try:
        report = simulate(engine, campaign, start=start_at, days=days, pack=load_pack(),
                          registry=RegistryStore(Path(get_settings().data_dir) / "registry"))
    except CampaignNotFound as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(report.to_dict()))
        return
    _print(report)


def _start_instant(start: str | None) -> datetime:
    """The given instant, or the next whole minute: consents and registry data are only in force
    from when they were recorded, so a start in the past (even the start of this minute) would
    dry-run without what was just loaded."""
    if start is None:
        now = datetime.now(timezone.utc)
        return now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start_at = datetime.fromisoformat(start.replace("Z", "+00:00"))
    if start_at.tzinfo is None:
        raise ValueError("no time zone")
    return start_at


def _print(report) -> None:
    data = report.to_dict()
    console = Console()
    console.print(f"[bold]{data['campaign']}[/bold]: {data['contacts']} contacts, simulated "
                  f"{data['start']} → {data['until']} (dry run: nothing sent, nothing stored)")
    table = Table(show_header=True)
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_column("detail")
    table.add_row("[green]would be allowed[/green]", str(data["allowed"]), _pairs(data["allowed_by_state"]))
    table.add_row("[yellow]deferrals[/yellow]", str(data["deferrals"]), _pairs(data["deferred_by_reason"]))
    table.add_row("[red]would be blocked[/red]", str(data["blocked"]), _pairs(data["blocked_by_reason"]))
    table.add_row("not reached in time", str(data["not_reached"]), "")
    table.add_row("allowed by local hour", "", _pairs(data["allowed_by_local_hour"]))
    table.add_row("allowed by day (UTC)", "", _pairs(data["allowed_by_day"]))
    console.print(table)
    console.print(f"list exhausted at: {data['exhausted_at'] or 'not within the simulated days'}")


def _pairs(counts: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items()) or "-"
