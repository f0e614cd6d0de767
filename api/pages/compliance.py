"""Compliance pages: the blocked/deferred report (filters, chart, CSV), the "why" page of a phone
number with replay, DNC status and freshness, and audit-chain verification.

The report, its chart and its CSV come from one filter (`outbound.reports.ReportFilter`), so what
the table shows, the picture and the download always agree.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from markupsafe import Markup
from sqlalchemy import Engine, select
from sqlmodel import Session

from api.pages.access import PageRoute, page_user
from api.pages.deps import EngineDep, NowDep, SessionDep
from api.pages.rendering import render
from api.pages.svg_chart import blocked_by_reason_svg
from consent import dnc, records
from consent.tables import BusinessRelationship, ConsentRecord, DncSource, Revocation
from outbound import audit, resubscribe_requests
from outbound.campaigns import campaign_seller
from outbound.decisions import load_decision
from outbound.models import Campaign
from outbound.replay import replay_row
from outbound.reports import (
    ReportFilter, ReportFilterError, decisions_for_phone, iter_report_csv, reasons_over_time, report_page, summarize,
)

router = APIRouter(prefix="/compliance", route_class=PageRoute, include_in_schema=False)
Compliance = page_user("compliance")

ROWS_SHOWN = 100
FILTER_FIELDS = ("campaign", "reason", "state", "verdict", "since", "until")
VERDICT_CHOICES = {"": ("block", "defer"), "block": ("block",), "defer": ("defer",)}
Text = Annotated[str, Query(max_length=40)]


# --- the blocked/deferred report -------------------------------------------------------------

def parse_filters(values: dict[str, str]) -> tuple[ReportFilter | None, dict[str, str]]:
    """The report filter from the form's text fields, or the message for each field that is wrong."""
    errors: dict[str, str] = {}
    campaign = values["campaign"].strip()
    if campaign and not campaign.isdigit():
        errors["campaign"] = f"{campaign!r} is not a campaign id"
    if values["verdict"] not in VERDICT_CHOICES:
        errors["verdict"] = f"{values['verdict']!r}: choose block, defer or both"
    since, until = _day(values["since"], "since", errors), _day(values["until"], "until", errors)
    if errors:
        return None, errors
    try:
        return ReportFilter(campaign_id=int(campaign) if campaign else None,
                            reason=values["reason"].strip() or None,
                            state=values["state"].strip().upper() or None,
                            verdicts=VERDICT_CHOICES[values["verdict"]],
                            since=since,
                            # `until` is a day the reader includes: the filter's bound is the next midnight.
                            until=until + timedelta(days=1) if until else None), {}
    except ReportFilterError as error:
        field, _, message = str(error).partition(": ")
        return None, {field if field in FILTER_FIELDS else "reason": message}


def _day(text: str, field: str, errors: dict[str, str]) -> datetime | None:
    if not text.strip():
        return None
    try:
        return datetime.combine(date.fromisoformat(text.strip()), time(), tzinfo=timezone.utc)
    except ValueError:
        errors[field] = f"{text!r} is not a date (YYYY-MM-DD)"
        return None


@router.get("")
def report(request: Request, session: SessionDep, user=Compliance, campaign: Text = "", reason: Text = "",
           state: Text = "", verdict: Text = "", since: Text = "", until: Text = ""):
    values = {"campaign": campaign, "reason": reason, "state": state, "verdict": verdict, "since": since,
              "until": until}
    filters, errors = parse_filters(values)
    campaigns = session.execute(select(Campaign.id, Campaign.name).order_by(Campaign.name)).all()
    options = [("", "every campaign"), *((str(campaign_id), name) for campaign_id, name in campaigns)]
    context = {"values": values, "errors": errors, "campaign_options": options, "rows": [], "summary": None,
               "chart": None, "shown": ROWS_SHOWN, "query": request.url.query}
    if filters is None:
        return render(request, "compliance/report.html", context, status_code=422)
    blocked_only = ReportFilter(**{**filters.__dict__, "verdicts": ("block",)})
    context.update(rows=report_page(session, filters, limit=ROWS_SHOWN), summary=summarize(session, filters),
                   chart=Markup(blocked_by_reason_svg(reasons_over_time(session, blocked_only)))
                   if "block" in filters.verdicts else None)
    return render(request, "compliance/report.html", context)


@router.get("/report.csv")
def report_csv(engine: EngineDep, user=Compliance, campaign: Text = "", reason: Text = "", state: Text = "",
               verdict: Text = "", since: Text = "", until: Text = ""):
    filters, errors = parse_filters({"campaign": campaign, "reason": reason, "state": state, "verdict": verdict,
                                     "since": since, "until": until})
    if filters is None:
        raise HTTPException(422, detail="; ".join(f"{field}: {message}" for field, message in errors.items()))

    def stream() -> Iterator[str]:
        with Session(engine) as session:
            yield from iter_report_csv(session, filters)

    return StreamingResponse(stream(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="blocked-deferred.csv"'})


# --- why: everything behind the decisions about one phone ---------------------------------------------

@router.get("/why")
def why(request: Request, session: SessionDep, now: NowDep, user=Compliance,
        phone: Annotated[str, Query(max_length=40)] = ""):
    context = {"phone": phone, "error": None, "e164": None}
    if not phone.strip():
        return render(request, "compliance/why.html", context)
    try:
        e164 = dnc.e164_of(phone)
    except dnc.DncError as error:
        context["error"] = str(error)
        return render(request, "compliance/why.html", context, status_code=422)
    loads = session.execute(select(DncSource).order_by(DncSource.loaded_at, DncSource.id)).scalars().all()
    decisions, sellers = [], {}
    for row in decisions_for_phone(session, e164):
        found = load_decision(session, row.decision_id)
        if row.campaign_id is not None and row.campaign_id not in sellers:
            campaign = session.get(Campaign, row.campaign_id)
            sellers[row.campaign_id] = campaign_seller(campaign) if campaign else None
        decisions.append({"row": row, "scenario": _scenario(found[0].scenario) if found else {},
                          "dnc_versions": sources_in_force(loads, row.decided_at),
                          "seller": sellers.get(row.campaign_id)})
    revocations = session.execute(select(Revocation).where(Revocation.phone == e164)
                                  .order_by(Revocation.received_at)).scalars().all()
    consents = session.execute(select(ConsentRecord).where(ConsentRecord.phone == e164)).scalars().all()
    context.update(e164=e164, decisions=decisions,
                   # Each consent's seller, evidence and whether it is in force now.
                   consents=records.consent_standings(consents, revocations, now),
                   revocations=revocations,
                   relationships=session.execute(select(BusinessRelationship).where(
                       BusinessRelationship.phone == e164)).scalars().all(),
                   listing=dnc.sources_listing(session, e164),
                   internal_entry=resubscribe_requests.entry_with_requests(
                       session, e164, dnc.internal_entry(session, e164)),
                   sources={row["source"]: row for row in dnc.status(session, _registry(), now)})
    return render(request, "compliance/why.html", context)


def sources_in_force(loads: list[DncSource], at: datetime) -> list[DncSource]:
    """The newest load of each DNC list (national, change files, each state, litigator) made at
    or before `at`: the versions a decision made then was checked against. `loads` is in load order."""
    newest: dict[tuple[str, str | None], DncSource] = {}
    for load in loads:
        if load.loaded_at <= at:
            newest[(load.kind, load.state)] = load
    return sorted(newest.values(), key=lambda load: (load.kind, load.state or ""))


def _scenario(text: str) -> dict:
    return json.loads(text)


@router.post("/decisions/{decision_id}/replay")
async def replay(request: Request, decision_id: str, engine: EngineDep, user=Compliance):
    result = await run_in_threadpool(_replay, engine, decision_id)
    if result is None:
        raise HTTPException(404, detail=f"no stored decision {decision_id!r}")
    return render(request, "compliance/_replay.html", {"result": result})


def _replay(engine: Engine, decision_id: str):
    with Session(engine) as session:
        found = load_decision(session, decision_id)
        if found is None:
            return None
        row, pack_json = found
        return replay_row(row.id, row.decided_at.isoformat(), row.scenario, row.decision, pack_json,
                          location=row.location)


# --- DNC status and audit ------------------------------------------------------------------------

def _registry():
    from consent.registry_store import RegistryStore
    from outbound.settings import get_settings

    return RegistryStore(Path(get_settings().data_dir) / "registry")


@router.get("/dnc")
def dnc_status(request: Request, session: SessionDep, now: NowDep, user=Compliance):
    return render(request, "compliance/dnc.html", {"sources": dnc.status(session, _registry(), now), "now": now})


@router.get("/audit")
def audit_page(request: Request, session: SessionDep, user=Compliance):
    return render(request, "compliance/audit.html", {"events": audit.recent_events(session, 20), "result": None})


@router.post("/audit/verify")
async def audit_verify(request: Request, engine: EngineDep, user=Compliance):
    result = await run_in_threadpool(_verify, engine)
    return render(request, "compliance/_verify.html", {"result": result, "checked_at": datetime.now(timezone.utc)})


def _verify(engine: Engine):
    with Session(engine) as session:
        return audit.verify(session)
