"""What every command that writes needs to say who and when (the clock and the acting user), and
how a command that answers --json fails."""
from __future__ import annotations

import getpass
import json
import os
from datetime import datetime, timezone

import typer
from rich.console import Console

_stderr = Console(stderr=True)


def now() -> datetime:
    return datetime.now(timezone.utc)


def default_actor() -> str:
    """`cli:<login name>` as the audit log's actor, or `cli` when the name cannot be found."""
    user = os.environ.get("USER") or os.environ.get("USERNAME")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = None
    return f"cli:{user}" if user else "cli"


def fail(code: int, message: str, as_json: bool = False) -> typer.Exit:
    """The exit to raise: the message in red on stderr and, with --json, as {"error": ...} on
    stdout, so a script reading the last line gets an object either way."""
    if as_json:
        typer.echo(json.dumps({"error": message}, ensure_ascii=False))
    _stderr.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)
