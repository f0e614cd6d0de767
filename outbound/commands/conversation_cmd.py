"""`outbound conversation show PHONE [--json]`: a contact's transcripts and memory (audited read)."""
from __future__ import annotations

import json

import typer
from rich.console import Console

from consent import records
from outbound.commands.cli_context import default_actor, now
from outbound.db import ensure_schema, get_engine, session_scope
from outbound.memory import read_conversation

conversation_app = typer.Typer(help="Conversation transcripts and memory, per contact.", no_args_is_help=True)
console = Console()


def register(app: typer.Typer) -> None:
    app.add_typer(conversation_app, name="conversation")


@conversation_app.command("show")
def show(phone: str = typer.Argument(..., help="The phone, in any NANP format."),
         as_json: bool = typer.Option(False, "--json", help="Print turns and facts as one JSON object.")) -> None:
    """Every turn (what was said, heard, with confidence) and every fact learned, oldest first."""
    try:
        e164 = records.normalize_phone(phone)
    except records.InvalidPhone as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    engine = get_engine()
    ensure_schema(engine)
    with session_scope(engine) as session:
        conversation = read_conversation(session, e164, actor=default_actor(), at=now())
    if as_json:
        typer.echo(json.dumps(conversation, ensure_ascii=False))
        return
    if not conversation["turns"] and not conversation["facts"]:
        console.print(f"no conversation on file for {e164}", highlight=False)
        return
    for turn in conversation["turns"]:
        heard = f"  heard: {turn['heard']!r} ({turn['input']}, {turn['confidence']})" if turn["heard"] is not None else ""
        console.print(f"{turn['at']}  attempt {turn['attempt_id']} turn {turn['turn']} [{turn['node']}]"
                      f"{' → ' + turn['intent'] if turn['intent'] else ''}{' → ' + turn['action'] if turn['action'] else ''}",
                      highlight=False, markup=False)
        if heard:
            console.print(heard, highlight=False, markup=False)
        console.print(f"  said: {turn['said']}", highlight=False, markup=False)
    for fact in conversation["facts"]:
        console.print(f"fact {fact['at']}  {fact['kind']} = {fact['value']}"
                      + (f"  ({fact['detail']})" if fact["detail"] else ""), highlight=False, markup=False)
