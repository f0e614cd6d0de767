"""Shared pieces of the consent-ledger tests: the consent routes on a test app, the consent CLI,
the outcome each seller's campaign got from a dispatch, and the campaigns and seller a migration
that fills in a missing seller starts from (0005 for consents, 0007 for business relationships)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import sqlalchemy as sa
import typer
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlmodel import Session

from api import database
from api.routes import consent as consent_routes
from api.validation_errors import request_validation_error
from outbound.db import session_scope
from outbound.models import Attempt, Decision
from scheduler.dispatch import DispatchConfig, DispatchReport, dispatch_once
from dispatch_support import NOON_NEW_YORK


def consent_api_client(engine: Engine, api_users, now: datetime) -> Iterator[TestClient]:
    """The consent router on its own app, its sessions on `engine`, its clock at `now`, signed
    in as the compliance user; `yield from` it in a fixture that takes `engine` and `api_users`."""
    def session_override():
        with session_scope(engine) as session:
            yield session

    app = FastAPI()
    app.include_router(consent_routes.router)
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.dependency_overrides[database.get_api_session] = session_override
    app.dependency_overrides[database.get_api_now] = lambda: now
    api_users.install(app)
    with TestClient(app, headers=api_users.headers("compliance")) as client:
        yield client


def consent_cli(cli_runner, monkeypatch, *, with_campaigns: bool = False):
    """`consent` (and with `with_campaigns`, `campaign`) commands, the consent clock at
    NOON_NEW_YORK: call it from a fixture that takes `outbound_env_db`."""
    from outbound.commands import campaign_cmd, consent_cmd

    monkeypatch.setattr(consent_cmd, "now", lambda: NOON_NEW_YORK)
    app = typer.Typer()
    consent_cmd.register(app)
    if with_campaigns:
        campaign_cmd.register(app)
    return lambda *args: cli_runner.invoke(app, list(args))


def dispatch_at_noon(engine: Engine, adapter, *, pack, registry) -> DispatchReport:
    """One dispatch pass at NOON_NEW_YORK with the default config, never sleeping."""
    return dispatch_once(engine, adapter, worker_id="w", now=NOON_NEW_YORK, pack=pack,
                         registry=registry, config=DispatchConfig(), sleep=lambda _s: None)


def outcome_by_campaign(engine: Engine, scenario_key: str) -> dict[int, tuple]:
    """campaign id -> (its attempt's status, error, the stored scenario's `scenario_key`)."""
    with Session(engine) as session:
        rows = session.execute(select(Attempt, Decision).join(Decision, Decision.id == Attempt.decision_id)).all()
        return {attempt.campaign_id: (attempt.status, attempt.error, json.loads(decision.scenario)[scenario_key])
                for attempt, decision in rows}


def insert_draft_campaigns(connection, campaigns: list[tuple[str, dict]], at: datetime) -> None:
    """Draft SMS telemarketing campaigns (name, settings) written as SQL, for a schema downgraded
    below the models."""
    for name, settings in campaigns:
        connection.execute(sa.text(
            "INSERT INTO campaigns (name, status, channel, purpose, voice, automated, settings, created_at, "
            "updated_at) VALUES (:name, 'draft', 'sms', 'telemarketing', NULL, true, :settings, :at, :at)"),
            {"name": name, "settings": json.dumps(settings), "at": at})


# The seller a migration fills in for a row stored without one, given the campaigns there are:
# the only campaign's seller name, else its name; with no campaign or several, a placeholder.
SELLER_FILLED_BY_MIGRATION = [
    ([("spring", {"conversation": {"seller_name": "Sunrise Solar"}})], "Sunrise Solar"),
    ([("spring", {})], "spring"),
    ([("spring", {}), ("autumn", {})], "unknown"),
    ([], "unknown"),
]
