"""`outbound dnc` (imports, the internal list, status) and `outbound scrub`.

The national registry store lives under `<OUTBOUND_DATA_DIR>/registry/`; every other list is in
the database. Each load is also recorded as a `DncSource` and audited, so a decision can name
the data it saw.

A load is all or nothing: a file with any malformed line changes nothing, renews no date and
exits 2 with the bad lines (file, line number, why, text; with --json as `malformed_samples` or
`rejected_samples`). A `--synced-at` later than now is refused. National full lists replace only
the area codes they hold (the FTC sends one file per area code); `--replace-all` makes them the
whole registry.

Exit status: 0 on success; 2 when the input was refused (nothing loaded).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from consent import dnc, scrub
from consent.registry_store import (ChangeReport, IngestReport, MalformedInput, RegistryInputError,
                                    RegistryStore, RegistryUnavailable)
from outbound.commands.cli_context import default_actor, now

EXIT_INVALID = 2
dnc_app = typer.Typer(help="Do-not-call data: national registry, state, internal and litigator lists.",
                      no_args_is_help=True)
import_app = typer.Typer(help="Load DNC files.", no_args_is_help=True)
dnc_app.add_typer(import_app, name="import")
console = Console()
errors = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.add_typer(dnc_app, name="dnc")
    app.command("scrub")(scrub_command)


# --- shared plumbing --------------------------------------------------------------------------

def _fail(message: str) -> None:
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_INVALID)


def _parse_instant(text: str | None, option: str) -> datetime:
    """An ISO 8601 instant (a date means midnight UTC); naive times are taken as UTC."""
    if text is None:
        return now()
    try:
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"{option} {text!r}: expected an ISO 8601 date or instant, e.g. 2026-07-01T00:00:00Z")
    return instant if instant.tzinfo else instant.replace(tzinfo=timezone.utc)


def _synced_option(text: str | None, current: datetime) -> datetime:
    """`--synced-at` (default `current`): never later than the load, or the data would pass
    for fresh beyond the 31-day limit."""
    synced = current if text is None else _parse_instant(text, "--synced-at")
    if synced > current:
        _fail(f"--synced-at {text}: that is in the future (now {current.replace(microsecond=0).isoformat().replace('+00:00', 'Z')}); "
              "give when the data was actually obtained")
    return synced


def registry_store() -> RegistryStore:
    from outbound.settings import get_settings
    return RegistryStore(Path(get_settings().data_dir) / "registry")


def _database():
    from outbound.db import ensure_schema, get_engine
    engine = get_engine()
    ensure_schema(engine)
    return engine


def _session_scope(engine):
    from outbound.db import session_scope
    return session_scope(engine)


def _audit() -> Callable:
    from outbound.audit import append
    return append


def _run_guarded(action: Callable[[], object], as_json: bool = False) -> object:
    """Domain errors become a message and exit 2, never a traceback. A load refused for its
    malformed lines lists them (with --json, as the last line's object)."""
    try:
        return action()
    except (MalformedInput, dnc.MalformedList) as error:
        _refused(error, as_json)
    except (RegistryInputError, RegistryUnavailable, dnc.DncError, scrub.ScrubInputError) as error:
        _fail(str(error))
    except ValueError as error:          # e.g. a naive instant or a bad argument
        _fail(str(error))


def _refused(error: MalformedInput | dnc.MalformedList, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(error.to_dict(), ensure_ascii=False))
    if isinstance(error, MalformedInput):
        total, samples = error.malformed, [(m.file, m.line, m.reason, m.text) for m in error.samples]
    else:
        total, samples = error.rejected, [(error.path, r.line, r.reason, r.text) for r in error.samples]
    errors.print(f"[red]error:[/red] {escape(str(error).split('; first:')[0])}", highlight=False, soft_wrap=True)
    _print_malformed(total, samples, to=errors)
    raise typer.Exit(EXIT_INVALID)


# --- imports ----------------------------------------------------------------------------------

@import_app.command("national")
def import_national(
    paths: list[Path] = typer.Argument(..., help="Full download files, .zip files or folders of them."),
    synced_at: str = typer.Option(None, "--synced-at", help="When the download was obtained (default now; "
                                                             "never later than now)."),
    replace_all: bool = typer.Option(False, "--replace-all", help="The files are the whole registry: drop "
                                     "every area code they do not hold (default: replace only the area "
                                     "codes they hold, keep the others)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    actor: str = typer.Option(None, "--actor", help="Who loads it (default cli:$USER)."),
) -> None:
    """Load full lists of the national registry (one file per area code, or one for everything;
    one number per line, e.g. 2125550123, 212,5550123 or 212-555-0123; plain or zipped). Each area
    code in the files replaces that area code only; the others are kept with their own dates."""
    current = now()
    synced = _synced_option(synced_at, current)
    store = registry_store()
    with errors.status("Reading the national registry download...", spinner="dots"):
        report: IngestReport = _run_guarded(lambda: store.ingest_full(
            paths, synced_at=synced, replace_all=replace_all, now=current), as_json)
    loaded = {f.sha256 for f in report.files}
    _record_national(report, "national", [f for f in store.manifest()["files"] if f["sha256"] in loaded],
                     synced, actor)
    _print_registry_report(report, as_json, "national registry")
    raise typer.Exit(EXIT_INVALID if report.malformed else 0)


@import_app.command("changes")
def import_changes(
    paths: list[Path] = typer.Argument(..., help="Change list files, .zip files or folders of them."),
    synced_at: str = typer.Option(None, "--synced-at", help="When the change list was obtained (default now; "
                                                             "never later than now)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    actor: str = typer.Option(None, "--actor", help="Who loads it (default cli:$USER)."),
) -> None:
    """Apply national registry change lists: a number and an A/D flag per line, in any column
    order, with or without a date (2125550123,A / D,2026-11-01,212-555-0123 / +/-AAANNNNNNN).
    Each area code the lists touch has its sync date renewed."""
    current = now()
    at = _synced_option(synced_at, current)
    store = registry_store()
    with errors.status("Applying change lists...", spinner="dots"):
        report: ChangeReport = _run_guarded(lambda: store.apply_changes(paths, at=at, now=current), as_json)
    applied = [f for f in report.files if not f.skipped]
    if applied:
        names = {Path(f.path).name for f in applied}
        files = [c for c in store.manifest()["changes"] if c["name"] in names]
        _record_national(report, "national_changes", files, at, actor)
    _print_registry_report(report, as_json, "national change lists")
    raise typer.Exit(EXIT_INVALID if report.malformed else 0)


def _record_national(report, kind: str, files: list[dict], synced: datetime, actor: str | None) -> None:
    engine = _database()
    with _session_scope(engine) as session:
        dnc.record_national_load(session, kind=kind, version=report.version, files=files,
                                 entries=report.entries, synced_at=synced, at=now(),
                                 actor=actor or default_actor(), audit=_audit())


def _print_registry_report(report: IngestReport | ChangeReport, as_json: bool, what: str) -> None:
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False))
        return
    if isinstance(report, IngestReport):
        console.print(f"Loaded {what}: area codes {_area_codes(report.area_codes_loaded)} from "
                      f"{len(report.files)} files ({report.lines:,} lines, {report.seconds:.1f} s); "
                      f"{report.entries:,} numbers in {report.area_codes} area codes now.", highlight=False)
        if report.area_codes_kept:
            console.print(f"  kept with their own dates: {_area_codes(report.area_codes_kept)}", highlight=False)
        if report.area_codes_dropped:
            console.print(f"  dropped (--replace-all): {_area_codes(report.area_codes_dropped)}", highlight=False)
    else:
        console.print(f"Applied {what}: +{report.added:,} / -{report.removed:,} numbers "
                      f"({report.additions:,} additions, {report.deletions:,} deletions read); "
                      f"{report.entries:,} numbers now.", highlight=False)
        for skipped in (f for f in report.files if f.skipped):
            console.print(f"  skipped {escape(skipped.path)}: {skipped.skipped}", highlight=False)
        if report.area_codes_renewed:
            console.print(f"  sync date renewed for area codes {_area_codes(report.area_codes_renewed)}",
                          highlight=False)
    console.print(f"version {report.version}, synced at {report.synced_at}", highlight=False)
    _print_malformed(report.malformed, [(m.file, m.line, m.reason, m.text) for m in report.malformed_samples])


def _area_codes(codes: list[str]) -> str:
    return ", ".join(codes[:30]) + (f" ... ({len(codes)} in all)" if len(codes) > 30 else "")


def _print_malformed(total: int, samples: list[tuple], to: Console = console) -> None:
    """The bad lines of a refused load: where, why and what they hold."""
    if not total:
        return
    to.print(f"[yellow]{total:,} malformed line{'s' if total != 1 else ''}[/yellow] (nothing was loaded):",
             highlight=False)
    for file, line, reason, text in samples:
        to.print(f"  {escape(str(file))}:{line}: {escape(reason)}: {escape(repr(text))}",
                 highlight=False, soft_wrap=True)
    if total > len(samples):
        to.print(f"  ... and {total - len(samples):,} more", highlight=False)


@import_app.command("state")
def import_state(
    code: str = typer.Argument(..., help="Two-letter state code, e.g. FL."),
    path: Path = typer.Argument(..., help="The state's list: one number per line, or CSV with a phone column."),
    version: str = typer.Option(None, "--version", help="The list's version as published (default: date + hash)."),
    synced_at: str = typer.Option(None, "--synced-at", help="When the list was obtained (default now)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    actor: str = typer.Option(None, "--actor", help="Who loads it (default cli:$USER)."),
) -> None:
    """Load a state do-not-call list; it replaces that state's previous load."""
    _import_list(lambda session, at, who: dnc.import_state_list(
        session, code, path, at=at, actor=who, audit=_audit(), version=version,
        synced_at=_synced_option(synced_at, at) if synced_at else None), as_json, actor)


@import_app.command("litigator")
def import_litigator(
    path: Path = typer.Argument(..., help="Numbers, one per line, or CSV with a phone column."),
    version: str = typer.Option(None, "--version", help="The list's version (default: date + hash)."),
    synced_at: str = typer.Option(None, "--synced-at", help="When the list was obtained (default now)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    actor: str = typer.Option(None, "--actor", help="Who loads it (default cli:$USER)."),
) -> None:
    """Load the litigator list; it replaces the previous load."""
    _import_list(lambda session, at, who: dnc.import_litigator_list(
        session, path, at=at, actor=who, audit=_audit(), version=version,
        synced_at=_synced_option(synced_at, at) if synced_at else None), as_json, actor)


def _import_list(load, as_json: bool, actor: str | None) -> None:
    engine = _database()

    def run():
        with _session_scope(engine) as session:
            return load(session, now(), actor or default_actor())
    report: dnc.ListImportReport = _run_guarded(run, as_json)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        name = f"state list {report.state}" if report.state else "litigator list"
        console.print(f"Loaded {name}: {report.entries:,} numbers (version {escape(report.version)}, "
                      f"{report.duplicates:,} duplicates).", highlight=False)
        _print_malformed(report.rejected, [(report.file, r.line, r.reason, r.text) for r in report.rejected_samples])
    raise typer.Exit(EXIT_INVALID if report.rejected else 0)


# --- internal list ----------------------------------------------------------------------------

@dnc_app.command("add")
def add(
    phone: str = typer.Argument(..., help="The number, in any common format."),
    reason: str = typer.Option(..., "--reason", help="Why (who asked, how)."),
    actor: str = typer.Option(None, "--actor", help="Who adds it (default cli:$USER)."),
) -> None:
    """Put a number on the internal do-not-call list (audited)."""
    engine = _database()

    def run():
        with _session_scope(engine) as session:
            entry, added = dnc.add_internal(session, phone, reason=reason, actor=actor or default_actor(),
                                            at=now(), audit=_audit(), via="cli")
            return entry.phone, added
    e164, added = _run_guarded(run)
    console.print(f"{e164} {'added to' if added else 'is already on'} the internal list.", highlight=False)


@dnc_app.command("remove")
def remove(
    phone: str = typer.Argument(..., help="The number, in any common format."),
    reason: str = typer.Option(..., "--reason", help="Why it may be called again (required)."),
    actor: str = typer.Option(None, "--actor", help="Who removes it (default cli:$USER)."),
) -> None:
    """Take a number off the internal list: stamped as removed with who and why, never deleted."""
    engine = _database()

    def run():
        with _session_scope(engine) as session:
            entries = dnc.remove_internal(session, phone, reason=reason, actor=actor or default_actor(),
                                          at=now(), audit=_audit())
            return entries[0].phone
    e164 = _run_guarded(run)
    console.print(f"{e164} removed from the internal list.", highlight=False)


# --- status -----------------------------------------------------------------------------------

@dnc_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print the sources as JSON.")) -> None:
    """Each source's size, version and age; warns from day 24, stale past 31 (telemarketing blocked)."""
    engine = _database()
    with _session_scope(engine) as session:
        rows = dnc.status(session, registry_store(), now())
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    table = Table("source", "entries", "version", "synced at", "age (days)", "note")
    for row in rows:
        note = row["warning"] or ""
        style = "red" if row["stale"] and row["kind"] != "internal" else ("yellow" if note else "")
        table.add_row(row["source"], f"{row['entries']:,}", escape(row["version"] or "-"),
                      row["synced_at"] or "-", "-" if row["age_days"] is None else f"{row['age_days']:.1f}",
                      f"[{style}]{escape(note)}[/{style}]" if style else escape(note))
    console.print(table)
    national = rows[0]
    if national["area_codes_held"]:
        console.print(f"National registry area codes held: {_area_codes(national['area_codes_held'])}; "
                      f"oldest sync {national['oldest_synced_at']}, newest {national['newest_synced_at']}.",
                      highlight=False, soft_wrap=True)


# --- scrub ------------------------------------------------------------------------------------

def scrub_command(
    file: Path = typer.Argument(..., help="The contact list (CSV with a phone column)."),
    out: Path = typer.Option(..., "--out", help="Where to write every row with e164 and blocked_by."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object (last line)."),
) -> None:
    """Tell, before any campaign runs, how many rows each DNC source would block; write each row's result."""
    engine = _database()
    store = registry_store()

    def run():
        with _session_scope(engine) as session, _progress(as_json) as progress:
            task = progress.add_task("Scrubbing", total=None)
            return scrub.scrub_csv(file, out, session, store, now=now(),
                                   progress=lambda done, total: progress.update(task, completed=done, total=total))
    report: scrub.ScrubReport = _run_guarded(run)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False))
        return
    _print_scrub(report, out)


def _progress(quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,} rows"),
                    TimeElapsedColumn(), console=errors, transient=True, disable=quiet)


def _print_scrub(report: scrub.ScrubReport, out: Path) -> None:
    table = Table("source", "rows")
    for source, count in report.counts.items():
        table.add_row(source, f"{count:,}")
    console.print(table)
    console.print(f"{report.rows:,} rows: {report.blocked:,} blocked, {report.clean:,} clean, "
                  f"{report.invalid:,} invalid. Written to {escape(str(out))}.", highlight=False)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    for row in report.invalid_samples:
        console.print(f"  line {row.line}: {row.reason}: {escape(repr(row.phone))}", highlight=False)
