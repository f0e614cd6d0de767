"""`outbound import contacts FILE --campaign NAME`: load a contact list into a campaign.

Stable for scripts: with --json the last line of stdout is exactly
{"accepted": N, "duplicates": N, "rejected": N, "rejected_by_reason": {reason: N}}.
Exit status 0 when the file was imported (rejected rows are in the report, the good ones are
stored), 2 when the file itself cannot be used (empty, header only, binary, no phone column,
a bad --map); the message is on stderr and nothing is stored.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn, DownloadColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn,
)
from rich.text import Text

from outbound.db import ensure_schema, get_engine, session_scope
from outbound.commands.cli_context import default_actor
from outbound.lists import (
    ImportProgress, ImportResult, ListFileError, check_list_size, find_or_create_campaign, import_contacts,
    open_list, parse_column_map, write_rejects_csv,
)

EXIT_FILE_ERROR = 2
stderr = Console(stderr=True)


class RowsPerSecondColumn(ProgressColumn):
    """Rows read per second since the start (rows live in the task's fields; the bar counts bytes)."""

    def render(self, task: Task) -> Text:
        rows = task.fields.get("rows", 0)
        elapsed = task.elapsed or 0
        rate = f"{rows / elapsed:,.0f} rows/s" if elapsed > 0 else "- rows/s"
        return Text(f"{rows:,} rows  {rate}", style="progress.data.speed")


def register(app: typer.Typer) -> None:
    _import_group(app).command("contacts")(import_contacts_command)


def _import_group(app: typer.Typer) -> typer.Typer:
    """The `import` group, shared with any other command module that imports files."""
    for group in app.registered_groups:
        if group.name == "import":
            return group.typer_instance
    group = typer.Typer(help="Load files: contact lists.", no_args_is_help=True)
    app.add_typer(group, name="import")
    return group


def import_contacts_command(
    file: Path = typer.Argument(..., help="CSV file: UTF-8 (with or without BOM) or Latin-1; "
                                          "comma, semicolon, tab or pipe separated."),
    campaign: str = typer.Option(..., "--campaign", help="Campaign name; created as a draft if new."),
    mapping: list[str] = typer.Option([], "--map", help="COLUMN=FIELD for a header not recognised "
                                                        "automatically; repeatable."),
    report: Path = typer.Option(None, "--report", help="Write the rejected rows (line, reason, "
                                                       "original columns) to this CSV."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of counts."),
    actor: str = typer.Option(None, "--actor", help="Who is importing (default: cli:$USER)."),
) -> None:
    """Import a contact list: normalise to E.164, place in time zones and states, drop duplicates."""
    try:
        column_map = parse_column_map(mapping)
        size = _file_size(file)
        check_list_size(size)
        with file.open("rb") as stream:
            reader, columns = open_list(stream, column_map)
            engine = get_engine()
            ensure_schema(engine)
            at = datetime.now(timezone.utc)
            with session_scope(engine) as session:
                campaign_id = find_or_create_campaign(session, campaign, at).id
            with _progress_bar(size) as advance:
                result = import_contacts(engine, reader, columns, campaign_id=campaign_id,
                                         file_name=file.name, actor=actor or default_actor(),
                                         at=at, progress=advance)
    except ListFileError as error:
        _fail(f"{file}: {error}")
    except OSError as error:
        _fail(f"{file}: cannot read: {error.strerror or error}")
    if report is not None:
        with session_scope(engine) as session, report.open("w", newline="", encoding="utf-8") as out:
            write_rejects_csv(session, result.import_id, out)
    _print_result(file, campaign, result, report, as_json)


def _file_size(file: Path) -> int:
    if file.is_dir():
        raise OSError(21, "is a directory")
    return file.stat().st_size


class _progress_bar:
    """A Rich bar on stderr over the file's bytes (hence a real ETA), showing rows and rows/s."""

    def __init__(self, total_bytes: int) -> None:
        self._progress = Progress(
            TextColumn("importing"), BarColumn(), DownloadColumn(), RowsPerSecondColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), console=stderr, transient=False,
            disable=not stderr.is_terminal,    # no bar in logs and pipes: the summary says it all
        )
        self._task = self._progress.add_task("import", total=total_bytes or None, rows=0)

    def __enter__(self):
        self._progress.start()
        return self._advance

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()

    def _advance(self, progress: ImportProgress) -> None:
        self._progress.update(self._task, completed=progress.bytes_read, rows=progress.rows)


def _print_result(file: Path, campaign: str, result: ImportResult, report: Path | None, as_json: bool) -> None:
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in sorted(result.rejected_by_reason.items()))
    stderr.print(f"{escape(str(file))} -> campaign {escape(campaign)!r} (import {result.import_id}): "
                 f"accepted {result.accepted:,}, duplicates {result.duplicates:,}, "
                 f"rejected {result.rejected:,}" + (f" ({reasons})" if reasons else ""),
                 highlight=False, soft_wrap=True)
    if report is not None:
        stderr.print(f"rejected rows written to {escape(str(report))}", highlight=False, soft_wrap=True)
    if as_json:
        typer.echo(json.dumps(result.summary(), ensure_ascii=False))


def _fail(message: str) -> None:
    stderr.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_FILE_ERROR)
