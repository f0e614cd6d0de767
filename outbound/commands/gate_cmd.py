"""`outbound gate check` and `outbound gate replay`."""
from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
from pathlib import Path

import typer
from rich.console import Console

from consent.check import check_line, check_lines
from consent.rules import load_pack

gate_app = typer.Typer(help="Ask the compliance gate; replay stored decisions.", no_args_is_help=True)
err = Console(stderr=True)

EXIT_INVALID = 2
CHUNK_LINES = 4000          # lines per worker task: big enough to amortise the hand-off
PARALLEL_FROM_BYTES = 4_000_000


def register(app: typer.Typer) -> None:
    app.add_typer(gate_app, name="gate")


@gate_app.command("check")
def check(file: Path = typer.Argument(..., help="FILE.json (one scenario) or FILE.jsonl (one per line); - reads JSON Lines from stdin"),
          workers: int = typer.Option(0, help="worker processes for big JSONL files (0: one per core)")) -> None:
    """Decide scenarios without storing anything. Exit 2 if any scenario is invalid."""
    if str(file) == "-":
        raise typer.Exit(_check_stream(sys.stdin.buffer, workers=1))
    if not file.is_file():
        err.print(f"[red]error:[/red] {file}: no such file")
        raise typer.Exit(EXIT_INVALID)
    if file.suffix.lower() in (".jsonl", ".ndjson"):
        raise typer.Exit(_check_jsonl(file, workers))
    raise typer.Exit(_check_single(file))


def _check_single(file: Path) -> int:
    """One scenario (the whole file, which may span lines): one line of compact JSON, the same
    bytes a JSON Lines file prints for it."""
    output, valid = check_line(file.read_bytes(), load_pack())
    print(output)
    if valid:
        return 0
    err.print(f"[red]invalid scenario:[/red] {json.loads(output)['error']}")
    return EXIT_INVALID


def _check_jsonl(file: Path, workers: int) -> int:
    workers = workers or os.cpu_count() or 1
    with file.open("rb") as stream:
        if workers > 1 and file.stat().st_size >= PARALLEL_FROM_BYTES:
            return _check_parallel(stream, workers)
        return _check_stream(stream, workers=1)


def _check_stream(stream, workers: int) -> int:
    invalid = 0
    write = sys.stdout.write
    for number, output, valid in check_lines(stream, load_pack()):
        write(output + "\n")
        if not valid:
            invalid += 1
            err.print(f"[red]line {number}:[/red] {json.loads(output)['error']}")
    return _summary(invalid)


def _check_parallel(stream, workers: int) -> int:
    """Decide chunks in worker processes; output stays in input order."""
    invalid = 0
    write = sys.stdout.write
    with ProcessPoolExecutor(max_workers=workers) as pool:
        chunks = _chunks(stream)
        for first_line, results in pool.map(_decide_chunk, chunks, chunksize=1):
            for offset, output, valid in results:
                write(output + "\n")
                if not valid:
                    invalid += 1
                    err.print(f"[red]line {first_line + offset - 1}:[/red] {json.loads(output)['error']}")
    return _summary(invalid)


def _chunks(stream):
    first_line = 1
    while chunk := list(islice(stream, CHUNK_LINES)):
        yield first_line, chunk
        first_line += len(chunk)


def _decide_chunk(task: tuple[int, list[bytes]]) -> tuple[int, list[tuple[int, str, bool]]]:
    first_line, lines = task
    return first_line, list(check_lines(lines, load_pack()))


def _summary(invalid: int) -> int:
    sys.stdout.flush()
    if invalid:
        err.print(f"[red]{invalid} invalid scenario(s)[/red]")
        return EXIT_INVALID
    return 0


@gate_app.command("replay")
def replay(decision_id: str = typer.Argument(..., help="id of a stored decision"),
           as_json: bool = typer.Option(False, "--json", help="print one JSON object")) -> None:
    """Re-evaluate a stored decision from its stored inputs and rule pack; exit 1 if it differs."""
    from outbound.replay import ReplayNotFound, replay_decision

    try:
        result = replay_decision(decision_id)
    except ReplayNotFound as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(EXIT_INVALID) from None
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        _print_replay(result)
    raise typer.Exit(0 if result.identical else 1)


def _print_replay(result) -> None:
    out = Console()
    out.print(f"decision [bold]{result.decision_id}[/bold] made {result.decided_at} under rules {result.rules_version}")
    out.print(f"stored:   {result.stored}")
    out.print(f"replayed: {result.replayed}")
    if result.identical:
        out.print("[green]byte-identical[/green]")
    else:
        out.print("[red]DIFFERENT[/red]: " + result.difference)
