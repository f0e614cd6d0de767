"""`outbound user add|list|deactivate|activate` and `outbound token create|list|revoke`.

These bootstrap the first admin on a fresh install (`outbound user add alice --role admin
--password-stdin`, then `outbound token create alice`); after that admins can use /v1/users.
A token is printed once: only its sha256 is stored. Exit status 0 on success, 2 for unusable
input (the message names the field), 1 for an unknown user or token.
"""
from __future__ import annotations

import json
import sys

import typer
from rich.console import Console

from outbound.commands.cli_context import default_actor, fail, now
from outbound.campaigns import CampaignNotFound, find_campaign
from outbound.db import ensure_schema, get_engine, session_scope
from outbound.users import (
    UserError, UserNotFound, add_user, assign_campaign, create_token, list_tokens, list_users, require_user, revoke_token,
    set_active, token_dict, user_dict,
)

EXIT_NOT_FOUND = 1
EXIT_INVALID = 2

user_app = typer.Typer(help="People who may use the API and the pages, and their roles.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (Authorization: Bearer ...).", no_args_is_help=True)
err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
    app.add_typer(token_app, name="token")



def _engine():
    engine = get_engine()
    ensure_schema(engine)
    return engine


@user_app.command("add")
def add(
    name: str = typer.Argument(..., help="Unique user name (also the audit log's actor)."),
    role: str = typer.Option(..., help="manager | compliance | agent | admin"),
    password_stdin: bool = typer.Option(False, "--password-stdin",
                                        help="Read a password for the pages from stdin (first line)."),
    as_json: bool = typer.Option(False, "--json", help="Print the user as JSON."),
) -> None:
    """Add a user. Without --password-stdin the user can only use API tokens."""
    # From stdin, never an option: a password on the command line ends up in shell history and `ps`.
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    try:
        with session_scope(_engine()) as session:
            user = user_dict(add_user(session, name, role, password=password, actor=default_actor(), at=now()))
    except UserError as error:
        raise fail(EXIT_INVALID, str(error), as_json) from None
    typer.echo(json.dumps(user) if as_json else f"user {user['name']} added (id {user['id']}, role {user['role']})")


@user_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="One JSON object per line.")) -> None:
    """Every user with role and state."""
    with session_scope(_engine()) as session:
        users = [user_dict(user) for user in list_users(session)]
    for user in users:
        typer.echo(json.dumps(user) if as_json else
                   f"{user['id']}\t{user['name']}\t{user['role']}\t{'active' if user['active'] else 'inactive'}")


def _set_active(name: str, active: bool) -> None:
    try:
        with session_scope(_engine()) as session:
            user = set_active(session, require_user(session, name), active, actor=default_actor(), at=now())
            typer.echo(f"user {user.name} {'activated' if active else 'deactivated'}")
    except UserNotFound as error:
        raise fail(EXIT_NOT_FOUND, str(error)) from None


@user_app.command("deactivate")
def deactivate(name: str = typer.Argument(..., help="User name or id.")) -> None:
    """Stop a user at once: their sessions end and their tokens stop working."""
    _set_active(name, False)


@user_app.command("activate")
def activate(name: str = typer.Argument(..., help="User name or id.")) -> None:
    """Let a deactivated user back in (their unrevoked tokens work again)."""
    _set_active(name, True)


@user_app.command("own")
def own(user: str = typer.Argument(..., help="The manager (name or id)."),
        campaign: str = typer.Argument(..., help="The campaign (name or id).")) -> None:
    """Make a manager the owner of a campaign (managers see only the campaigns they own)."""
    try:
        with session_scope(_engine()) as session:
            found = find_campaign(session, campaign)
            assign_campaign(session, found, require_user(session, user), actor=default_actor(), at=now())
            typer.echo(f"campaign {found.name} now belongs to {user}")
    except (UserNotFound, CampaignNotFound) as error:
        raise fail(EXIT_NOT_FOUND, str(error)) from None
    except UserError as error:
        raise fail(EXIT_INVALID, str(error)) from None


@token_app.command("create")
def token_create(
    user: str = typer.Argument(..., help="User name or id the token acts as."),
    label: str = typer.Option("", help="What the token is for (shown in listings)."),
    as_json: bool = typer.Option(False, "--json", help='Print {"id", "token", "prefix", "user"}.'),
) -> None:
    """Make an API token and print it once; store it now, it cannot be shown again."""
    try:
        with session_scope(_engine()) as session:
            new = create_token(session, require_user(session, user), label=label, actor=default_actor(), at=now())
    except UserNotFound as error:
        raise fail(EXIT_NOT_FOUND, str(error), as_json) from None
    except UserError as error:
        raise fail(EXIT_INVALID, str(error), as_json) from None
    if as_json:
        typer.echo(json.dumps({"id": new.id, "token": new.token, "prefix": new.prefix, "user": new.user}))
    else:
        typer.echo(new.token)
        err.print(f"token {new.id} for {new.user}: shown once, send it as `Authorization: Bearer <token>`",
                  highlight=False, soft_wrap=True, markup=False)


@token_app.command("list")
def token_list(user: str | None = typer.Option(None, help="Only this user's tokens."),
               as_json: bool = typer.Option(False, "--json", help="One JSON object per line.")) -> None:
    """Tokens by id, prefix and state (never the token itself)."""
    try:
        with session_scope(_engine()) as session:
            user_id = require_user(session, user).id if user else None
            rows = [token_dict(row) for row in list_tokens(session, user_id)]
    except UserNotFound as error:
        raise fail(EXIT_NOT_FOUND, str(error)) from None
    for row in rows:
        typer.echo(json.dumps(row) if as_json else
                   f"{row['id']}\t{row['prefix']}…\tuser {row['user_id']}\t{row['label']}\t"
                   f"{'revoked ' + row['revoked_at'] if row['revoked_at'] else 'active'}")


@token_app.command("revoke")
def token_revoke(token_id: int = typer.Argument(..., help="Token id (from `outbound token list`).")) -> None:
    """Stop a token at once."""
    try:
        with session_scope(_engine()) as session:
            revoke_token(session, token_id, actor=default_actor(), at=now())
    except UserNotFound as error:
        raise fail(EXIT_NOT_FOUND, str(error)) from None
    typer.echo(f"token {token_id} revoked")
