"""`outbound agent add|list|status|remove|policy`, `outbound transfer list|show`, and
`outbound campaign abandonment NAME` (attached to the campaign group from here).

Exit status 0 on success; 2 when the input cannot be used (nothing is stored); 1 when the agent,
transfer or campaign does not exist or the change is not allowed now. --json prints one JSON
object (or list) on stdout.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import typer
from sqlalchemy import select

from outbound import abandonment, agents, transfers
from outbound.agent_tables import Transfer
from outbound.campaigns import CampaignNotFound, find_campaign, parse_duration
from outbound.commands.campaign_cmd import campaign_app
from outbound.commands.cli_context import default_actor, fail, now
from outbound.db import ensure_schema, get_engine, session_scope

EXIT_NOT_ALLOWED = 1
EXIT_INVALID = 2

agent_app = typer.Typer(help="Agents who take transferred callers.", no_args_is_help=True)
transfer_app = typer.Typer(help="Warm transfers and their results.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(agent_app, name="agent")
    app.add_typer(transfer_app, name="transfer")
    campaign_app.command("abandonment")(campaign_abandonment)



def _print(data: Any, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, default=str) if as_json else text)


def _session():
    engine = get_engine()
    ensure_schema(engine)
    return session_scope(engine)


@agent_app.command("add")
def add(name: str = typer.Argument(..., help="Unique agent name (a console user of role agent has the same)."),
        reach: str = typer.Option(..., help="E.164 number (+14155550123) or Twilio Client identity (client:NAME)"),
        status: str = typer.Option("offline", help="available | busy | wrap_up | offline"),
        as_json: bool = typer.Option(False, "--json")) -> None:
    """Add an agent."""
    try:
        with _session() as session:
            result = agents.agent_dict(agents.add_agent(session, name, reach, status=status, actor=default_actor(),
                                                        at=now()))
    except (agents.AgentError, agents.AgentExists) as error:
        raise fail(EXIT_INVALID, str(error), as_json) from None
    _print(result, as_json, f"added agent {result['name']} (id {result['id']}, {result['status']}, {result['reach']})")


@agent_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json")) -> None:
    """Agents with their status and how they are reached."""
    with _session() as session:
        rows = [agents.agent_dict(agent) for agent in agents.list_agents(session)]
    text = "\n".join(f"{row['id']:>4}  {row['name']:<24} {row['status']:<10} {row['reach']}" for row in rows)
    _print(rows, as_json, text or "no agents")


@agent_app.command("status")
def status(name: str = typer.Argument(...), new_status: str = typer.Argument(..., help="available | busy | wrap_up | offline"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Set an agent's status."""
    try:
        with _session() as session:
            agent = agents.set_status(session, agents.find_agent(session, name), new_status, actor=default_actor(),
                                      at=now())
            result = agents.agent_dict(agent)
    except agents.AgentError as error:
        raise fail(EXIT_INVALID, str(error), as_json) from None
    except agents.AgentNotFound as error:
        raise fail(EXIT_NOT_ALLOWED, str(error), as_json) from None
    _print(result, as_json, f"agent {result['name']} is {result['status']}")


@agent_app.command("remove")
def remove(name: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """Remove an agent (not while busy on a transfer)."""
    try:
        with _session() as session:
            agents.remove_agent(session, agents.find_agent(session, name), actor=default_actor(), at=now())
    except agents.AgentNotFound as error:
        raise fail(EXIT_NOT_ALLOWED, str(error), as_json) from None
    except agents.AgentError as error:
        raise fail(EXIT_NOT_ALLOWED, str(error), as_json) from None
    _print({"removed": name}, as_json, f"removed agent {name}")


@agent_app.command("policy")
def policy(campaign: str = typer.Argument(..., help="campaign name or id"),
           wait: str | None = typer.Option(None, help="how long a caller holds for an agent, e.g. 45s"),
           callback_after: str | None = typer.Option(None, "--callback-after",
                                                     help="when the callback is due if no agent joins, e.g. 1h"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Show or set a campaign's transfer policy (hold time, callback delay)."""
    try:
        wait_seconds = parse_duration(wait) if wait else None
        callback_seconds = parse_duration(callback_after) if callback_after else None
    except ValueError as error:
        raise fail(EXIT_INVALID, str(error), as_json) from None
    try:
        with _session() as session:
            found = find_campaign(session, campaign)
            if wait_seconds is None and callback_seconds is None:
                result = transfers.policy_for(session, found.id)
            else:
                result = transfers.set_policy(session, found.id, wait_seconds=wait_seconds,
                                              callback_delay_seconds=callback_seconds, actor=default_actor(), at=now())
    except CampaignNotFound as error:
        raise fail(EXIT_NOT_ALLOWED, str(error), as_json) from None
    except transfers.TransferError as error:
        raise fail(EXIT_INVALID, str(error), as_json) from None
    data = {"campaign": campaign, "wait_seconds": result.wait_seconds,
            "callback_delay_seconds": result.callback_delay_seconds}
    _print(data, as_json, f"{campaign}: callers hold {result.wait_seconds}s for an agent; "
                          f"callback after {result.callback_delay_seconds}s")


@transfer_app.command("list")
def transfer_list(limit: int = typer.Option(50, min=1, max=1000), as_json: bool = typer.Option(False, "--json")) -> None:
    """The latest transfers with their result."""
    with _session() as session:
        rows = [transfers.transfer_dict(t) for t in session.execute(
            select(Transfer).order_by(Transfer.id.desc()).limit(limit)).scalars()]
    text = "\n".join(f"{row['id']:>5}  attempt {row['attempt_id']:<6} {row['state']:<14} {row['result'] or '-':<24}"
                     f" agent {row['agent_id'] or '-'}" for row in rows)
    _print(rows, as_json, text or "no transfers")


@transfer_app.command("show")
def transfer_show(transfer_id: int = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """A transfer and its context card."""
    try:
        with _session() as session:
            data = {**transfers.transfer_dict(transfers.get_transfer(session, transfer_id)),
                    "card": transfers.context_card(session, transfer_id)}
    except transfers.TransferNotFound as error:
        raise fail(EXIT_NOT_ALLOWED, str(error), as_json) from None
    _print(data, as_json, json.dumps(data, indent=2, ensure_ascii=False, default=str))


def campaign_abandonment(name: str = typer.Argument(..., help="campaign name or id"),
                         at: str | None = typer.Option(None, help="the 30 days ending at this instant (ISO 8601 "
                                                                   "with a zone, e.g. a simulated run's end); default now"),
                         as_json: bool = typer.Option(False, "--json")) -> None:
    """The campaign's abandoned-call rate over 30 days against the 3 % budget."""
    try:
        until = datetime.fromisoformat(at.replace("Z", "+00:00")) if at else now()
    except ValueError:
        until = None
    if until is None or until.tzinfo is None:
        raise fail(EXIT_INVALID, f"--at: {at!r} is not an ISO 8601 instant with a zone (e.g. 2026-07-15T16:00:00Z)",
                    as_json)
    try:
        with _session() as session:
            rate = abandonment.abandonment_rate(session, find_campaign(session, name), until)
    except CampaignNotFound as error:
        raise fail(EXIT_NOT_ALLOWED, str(error), as_json) from None
    kind = "agent campaign" if rate.agent_campaign else "not an agent campaign (voice is not live)"
    _print(rate.as_dict(), as_json,
           f"{name}: {rate.abandoned} abandoned of {rate.live_answers} live answers in 30 days = "
           f"{rate.rate:.2%} (budget {rate.budget:.0%}, {'SPENT' if rate.spent else f'{rate.remaining} left'}; {kind})")
