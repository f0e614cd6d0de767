"""`outbound demo` (a sample campaign run against the simulator) and `outbound gate whatif`
(the bundled gate scenarios, decided, stored and audited)."""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from importlib import resources

import typer
from rich.console import Console
from rich.table import Table

from consent.gate import evaluate
from consent.rules import load_pack
from consent.scenario import decision_to_dict, parse_scenario
from outbound.db import ensure_schema, get_engine, session_scope
from outbound.decisions import store_decision

VERDICT_STYLE = {"allow": "green", "defer": "yellow", "block": "red"}


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
    from outbound.commands.gate_cmd import gate_app
    gate_app.command("whatif")(whatif)


def demo(as_json: bool = typer.Option(False, "--json", help="end with one JSON object of counts"),
         seed: int = typer.Option(7, help="simulator seed: the same seed gives the same run")) -> None:
    """Run a sample campaign over ~1,000 fictional contacts against the simulator, to completion."""
    from outbound.demo import run_demo
    from outbound.settings import get_settings

    engine = get_engine()
    ensure_schema(engine)
    console = Console(stderr=as_json)
    with console.status("simulating the campaign (accelerated time, nothing leaves this machine)..."):
        report = run_demo(engine, get_settings().data_dir, seed=seed)
    console.print(_demo_table(report))
    console.print(f"database {engine.url.render_as_string(hide_password=True)}")
    if report.example_blocked:
        console.print(f"Why was a number blocked? [bold]outbound gate replay {report.example_blocked}[/bold]")
    console.print("Check the audit chain: [bold]outbound audit verify[/bold]")
    if as_json:
        print(json.dumps(report.counts()))


def _demo_table(report) -> Table:
    table = Table(title=f"Campaign {report.campaign}: {report.contacts} contacts imported "
                        f"({report.rejected_rows} rows rejected), simulated until {report.simulated_until:%Y-%m-%d %H:%M} UTC")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("by reason / outcome")
    table.add_row("[green]allowed by the gate[/green]", str(report.allowed),
                  "decisions; campaign hours (09:00-20:00 local) may still hold a call back")
    table.add_row("called", str(report.called),
                  ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items()) if k != "none"))
    table.add_row("[yellow]deferred[/yellow]", str(report.deferred), _by(report.deferred_by_reason))
    table.add_row("[red]blocked[/red]", str(report.blocked), _by(report.blocked_by_reason))
    table.add_row("completed attempts", str(report.completed), "")
    table.add_row("transferred to an agent", str(report.transferred),
                  "qualified by the script, then warm-transferred to a simulated agent who joined")
    return table


def _by(counts: dict) -> str:
    return ", ".join(f"{code} {count}" for code, count in counts.items()) or "-"


def whatif(as_json: bool = typer.Option(False, "--json", help="end with one JSON object of counts")) -> None:
    """Run the bundled gate scenarios, store each decision and show why."""
    samples = json.loads(resources.files("outbound").joinpath("samples", "scenarios.json").read_text("utf-8"))
    pack = load_pack()
    engine = get_engine()
    ensure_schema(engine)
    rows = []
    with session_scope(engine) as session:
        for sample in samples:
            request, facts, at = parse_scenario(sample["scenario"])
            decision = decision_to_dict(evaluate(request, facts, pack, at))
            stored = store_decision(session, scenario=sample["scenario"], decision=decision,
                                    rules_version=pack.version, rule_pack_json=pack.to_json(),
                                    attempt_id=None, actor="demo", at=datetime.now(timezone.utc))
            rows.append((sample["title"], sample["scenario"], decision, stored.id))
    console = Console()
    console.print(_table(rows, pack.version))
    counts = _counts(rows)
    console.print(f"allowed {counts['allowed']}, deferred {counts['deferred']}, blocked {counts['blocked']} "
                  f"(rule pack {pack.version}; database {engine.url.render_as_string(hide_password=True)})")
    console.print(f"Replay one: [bold]outbound gate replay {rows[1][3]}[/bold]   "
                  "Check the audit chain: [bold]outbound audit verify[/bold]")
    if as_json:
        print(json.dumps(counts))


def _table(rows, version: str) -> Table:
    table = Table(title=f"Gate what-if over {len(rows)} sample scenarios", show_lines=True)
    for column in ("scenario", "at (UTC)", "verdict", "reasons", "next allowed", "decision id"):
        table.add_column(column, overflow="fold")
    for title, scenario, decision, decision_id in rows:
        style = VERDICT_STYLE[decision["verdict"]]
        reasons = "\n".join(f"{r['code']}: {r['detail']}" for r in decision["reasons"]) or "-"
        table.add_row(title, scenario["at"], f"[{style}]{decision['verdict']}[/{style}]", reasons,
                      decision["next_allowed_at"] or "-", decision_id)
    return table


def _counts(rows) -> dict:
    verdicts = Counter(decision["verdict"] for _, _, decision, _ in rows)
    blocked_by = Counter(r["code"] for _, _, d, _ in rows if d["verdict"] == "block" for r in d["reasons"])
    deferred_by = Counter(r["code"] for _, _, d, _ in rows if d["verdict"] == "defer" for r in d["reasons"])
    return {"allowed": verdicts["allow"], "deferred": verdicts["defer"], "blocked": verdicts["block"],
            "blocked_by_reason": dict(sorted(blocked_by.items())),
            "deferred_by_reason": dict(sorted(deferred_by.items())), "decisions": len(rows)}
