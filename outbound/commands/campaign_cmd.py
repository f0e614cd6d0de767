"""`outbound campaign create|update|start|pause|resume|stop|status|list`.

Exit status 0 on success; 2 when the input cannot be used (the message names the field and
nothing is stored); 1 when the campaign does not exist or its status forbids the change.
With --json, stdout is one JSON object.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any

import typer

from outbound.campaigns import (
    CAMPAIGN_STATUSES, CampaignError, CampaignExists, CampaignNotFound, InvalidTransition, campaign_dict,
    campaign_status, create_campaign, find_campaign, newest_campaigns, parse_retry, pause_campaign,
    resume_campaign, start_campaign, stop_campaign, update_settings, validate_campaign,
)
from outbound.commands.cli_context import fail
from outbound.db import ensure_schema, get_engine, session_scope
from outbound.users import UserError, UserNotFound, assign_campaign, require_user

EXIT_NOT_ALLOWED = 1
EXIT_INVALID = 2

campaign_app = typer.Typer(help="Create campaigns and move them through their lifecycle.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(campaign_app, name="campaign")


def _now() -> datetime:
    return datetime.now(timezone.utc)



@campaign_app.command("create")
def create(
    name: str = typer.Argument(..., help="Unique campaign name."),
    channel: str = typer.Option(..., help="voice | sms"),
    purpose: str = typer.Option(..., help="telemarketing | informational"),
    voice: str | None = typer.Option(None, help="voice campaigns: live | prerecorded | artificial"),
    automated: bool = typer.Option(True, "--automated/--manual", help="the engine dials (default), or a person does"),
    caller_id: str = typer.Option(..., "--caller-id", help="E.164 number calls and texts come from"),
    script: str | None = typer.Option(None, help="what is said (voice) or sent (sms)"),
    hours: str | None = typer.Option(None, help="local HH:MM-HH:MM; narrows the legal window, never widens it"),
    start_date: str | None = typer.Option(None, "--start-date", help="YYYY-MM-DD, contact's local date"),
    end_date: str | None = typer.Option(None, "--end-date", help="YYYY-MM-DD, contact's local date"),
    cps: float = typer.Option(1.0, help="calls (or texts) per second ceiling"),
    max_concurrent: int = typer.Option(10, "--max-concurrent", help="attempts dialing at once"),
    retry: list[str] = typer.Option([], help="OUTCOME=DELAY:MAX_ATTEMPTS, repeatable (e.g. no-answer=4h:3)"),
    conversation_script: str | None = typer.Option(
        None, "--conversation-script", help="voice: bundled script name (solar_qualify) or a YAML/JSON script path"),
    record_calls: bool = typer.Option(False, "--record-calls", help="voice: calls are recorded (announced where required)"),
    machine_policy: str = typer.Option("hang_up", "--machine-policy", help="voice: leave_voicemail | hang_up"),
    seller_name: str | None = typer.Option(None, "--seller", "--seller-name",
                                           help="the seller: who calls say they are from, and whose consents "
                                                "count for this campaign (default: the campaign's name)"),
    callback_number: str | None = typer.Option(None, "--callback-number", help="E.164 number calls give (default: caller ID)"),
    owner: str | None = typer.Option(None, "--owner", help="the manager (name or id) who owns it: managers see "
                                                          "only their own campaigns in the API and the pages"),
    as_json: bool = typer.Option(False, "--json", help="Print the campaign as JSON."),
) -> None:
    """Create a draft campaign. Bad input stores nothing and exits 2."""
    try:
        settings: dict[str, Any] = {"hours": hours, "start_date": start_date, "end_date": end_date,
                                    "cps": cps, "max_concurrent": max_concurrent,
                                    "retry": dict(parse_retry(item) for item in retry),
                                    "conversation": {"script": conversation_script, "record_calls": record_calls,
                                                     "machine_policy": machine_policy, "seller_name": seller_name,
                                                     "callback_number": callback_number}}
        spec = validate_campaign({"name": name, "channel": channel, "purpose": purpose, "voice": voice,
                                  "automated": automated, "caller_id": caller_id, "script": script,
                                  "settings": settings})
    except CampaignError as error:
        raise fail(EXIT_INVALID, str(error), as_json) from None
    engine = get_engine()
    ensure_schema(engine)
    try:
        with session_scope(engine) as session:
            campaign = create_campaign(session, spec, actor="cli", at=_now())
            if owner is not None:
                assign_campaign(session, campaign, require_user(session, owner), actor="cli", at=_now())
            result = campaign_dict(campaign)
    except (CampaignExists, UserNotFound, UserError) as error:
        raise fail(EXIT_INVALID, str(error), as_json) from None
    _print(result, as_json, f"created campaign {result['name']} (id {result['id']}, draft)")


@campaign_app.command("update")
def update(
    name: str = typer.Argument(..., help="Campaign name or id."),
    hours: str | None = typer.Option(None, help="local HH:MM-HH:MM; narrows the legal window, never widens it"),
    start_date: str | None = typer.Option(None, "--start-date", help="YYYY-MM-DD, contact's local date"),
    end_date: str | None = typer.Option(None, "--end-date", help="YYYY-MM-DD, contact's local date"),
    cps: float | None = typer.Option(None, help="calls (or texts) per second ceiling"),
    max_concurrent: int | None = typer.Option(None, "--max-concurrent", help="attempts dialing at once"),
    retry: list[str] = typer.Option([], help="OUTCOME=DELAY:MAX_ATTEMPTS, repeatable; replaces every retry rule"),
    seller: str | None = typer.Option(None, "--seller", "--seller-name",
                                      help="the seller whose consents count (and whom calls name)"),
    as_json: bool = typer.Option(False, "--json", help="Print the campaign as JSON."),
) -> None:
    """Change a campaign's hours, dates, pacing, retries or seller; what is not given stays. Any
    status but completed. Bad input stores nothing and exits 2."""
    try:
        changes: dict[str, Any] = {key: value for key, value in (
            ("hours", hours), ("start_date", start_date), ("end_date", end_date), ("cps", cps),
            ("max_concurrent", max_concurrent)) if value is not None}
        if retry:
            changes["retry"] = dict(parse_retry(item) for item in retry)
    except CampaignError as error:
        raise fail(EXIT_INVALID, str(error), as_json) from None
    if not changes and seller is None:
        raise fail(EXIT_INVALID, "nothing to change: give at least one of --hours, --start-date, --end-date, "
                                  "--cps, --max-concurrent, --retry, --seller", as_json)
    engine = get_engine()
    ensure_schema(engine)
    try:
        with session_scope(engine) as session:
            campaign = find_campaign(session, name)
            if seller is not None:
                changes["conversation"] = {**(campaign.settings or {}).get("conversation", {}), "seller_name": seller}
            result = campaign_dict(update_settings(session, campaign, changes, actor="cli", at=_now()))
    except CampaignError as error:
        raise fail(EXIT_INVALID, str(error), as_json) from None
    except (CampaignNotFound, InvalidTransition) as error:
        raise fail(EXIT_NOT_ALLOWED, str(error), as_json) from None
    _print(result, as_json, f"campaign {result['name']}: settings changed ({', '.join(sorted(changes))})")


def _lifecycle(action: Callable, verb: str) -> Callable:
    def command(name: str = typer.Argument(..., help="Campaign name or id."),
                as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
        engine = get_engine()
        ensure_schema(engine)
        try:
            with session_scope(engine) as session:
                campaign = find_campaign(session, name)
                count = action(session, campaign, actor="cli", at=_now())
                result = {**campaign_dict(campaign), "attempts_changed": count or 0}
        except (CampaignNotFound, InvalidTransition) as error:
            raise fail(EXIT_NOT_ALLOWED, str(error), as_json) from None
        _print(result, as_json, f"campaign {result['name']} {verb}: now {result['status']}"
               + (f" ({count} attempts {'cancelled' if verb == 'stopped' else 'created'})" if count else ""))
    command.__doc__ = f"{verb.capitalize()} a campaign."
    return command


campaign_app.command("start", help="draft → running: one pending attempt per contact, due now.")(
    _lifecycle(start_campaign, "started"))
campaign_app.command("pause", help="running → paused: nothing new is dialed.")(_lifecycle(pause_campaign, "paused"))
campaign_app.command("resume", help="paused → running.")(_lifecycle(resume_campaign, "resumed"))
campaign_app.command("stop", help="→ completed: attempts not yet dialing are cancelled.")(
    _lifecycle(stop_campaign, "stopped"))


@campaign_app.command("status")
def status(name: str = typer.Argument(..., help="Campaign name or id."),
           as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON.")) -> None:
    """Attempts by state; gate decisions by verdict and by reason."""
    engine = get_engine()
    ensure_schema(engine)
    try:
        with session_scope(engine) as session:
            result = campaign_status(session, find_campaign(session, name)).to_dict()
    except CampaignNotFound as error:
        raise fail(EXIT_NOT_ALLOWED, str(error), as_json) from None
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, default=_json_default))
        return
    campaign = result["campaign"]
    typer.echo(f"{campaign['name']} ({campaign['status']}, {campaign['channel']}, {campaign['purpose']})")
    for title, counts in (("attempts", result["attempts"]), ("decisions", result["decisions"]),
                          ("deferred by reason", result["deferred_by_reason"]),
                          ("blocked by reason", result["blocked_by_reason"])):
        shown = ", ".join(f"{key} {value}" for key, value in sorted(counts.items())) or "none"
        typer.echo(f"  {title}: {shown}")
    if result["waiting_for_campaign_hours"]:
        typer.echo(f"  waiting for campaign hours: {result['waiting_for_campaign_hours']}")


@campaign_app.command("list")
def list_(status_filter: str | None = typer.Option(None, "--status", help=" | ".join(CAMPAIGN_STATUSES)),
          as_json: bool = typer.Option(False, "--json", help='Print {"campaigns": [...]} as JSON.')) -> None:
    """Every campaign, newest first: id, name, status, channel and purpose."""
    if status_filter is not None and status_filter not in CAMPAIGN_STATUSES:
        raise fail(EXIT_INVALID, f"--status: {status_filter!r} is not one of {', '.join(CAMPAIGN_STATUSES)}", as_json)
    engine = get_engine()
    ensure_schema(engine)
    with session_scope(engine) as session:
        found = [campaign_dict(campaign) for campaign in newest_campaigns(session, status=status_filter)]
    if as_json:
        typer.echo(json.dumps({"campaigns": found}, ensure_ascii=False, default=_json_default))
        return
    if not found:
        typer.echo("no campaigns" + (f" {status_filter}" if status_filter else ""))
    for campaign in found:
        kind = f"{campaign['channel']} {campaign['purpose']}" + (f", {campaign['voice']} voice" if campaign["voice"] else "")
        typer.echo(f"{campaign['id']:>5}  {campaign['name']}  ({campaign['status']}; {kind})")


def _json_default(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _print(result: dict, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(result, ensure_ascii=False, default=_json_default) if as_json else text)
