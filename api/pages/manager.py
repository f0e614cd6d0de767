"""Campaign manager pages: campaigns (create, configure, start, pause), list upload with its
import report, a simulate dry run, and the live panel pushed over SSE.

A manager sees and changes only the campaigns they own (`Campaign.owner_id`); someone else's
campaign answers 404, so its existence does not leak either.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy import Engine, desc, select
from sqlmodel import Session
from starlette.datastructures import UploadFile as StarletteUpload

from api.pages.access import PageRoute, page_user
from api.pages.campaign_live import live_counters
from api.pages.deps import EngineDep, NowDep, SessionDep
from api.pages.rendering import render, templates
from api.pages.sse import poll_changes, sse_response
from api.upload_names import base_name
from outbound import transfers
from outbound.campaigns import (
    CampaignError, CampaignExists, InvalidTransition, campaign_settings, create_campaign, pause_campaign,
    resume_campaign, start_campaign, stop_campaign, validate_campaign,
)
from outbound.lists import (
    FileTooLarge, ListFileError, NoDataRows, NoPhoneColumn, check_list_size, import_contacts, import_summary,
    iter_rejects_csv, max_list_bytes, open_list,
)
from outbound.models import Campaign, ImportReject, ListImport

router = APIRouter(prefix="/manager", route_class=PageRoute, include_in_schema=False)
Manager = page_user("manager")

REJECTS_SHOWN = 50
LIVE_INTERVAL_SECONDS = 1.0
SIMULATE_MAX_DAYS = 366

CAMPAIGN_FIELDS = ("name", "channel", "purpose", "voice", "caller_id", "script", "hours", "cps",
                   "max_concurrent", "start_date", "end_date", "seller")
LIFECYCLE = {"start": start_campaign, "pause": pause_campaign, "resume": resume_campaign, "stop": stop_campaign}


# --- campaigns ----------------------------------------------------------------------------------

@router.get("")
def campaigns_page(request: Request, session: SessionDep, user=Manager):
    return _campaigns_page(request, session, user, values={"channel": "voice", "purpose": "telemarketing",
                                                          "voice": "artificial", "automated": "on"}, errors={})


def _campaigns_page(request: Request, session: Session, user, *, values: dict, errors: dict,
                    status_code: int = 200):
    campaigns = session.execute(select(Campaign).where(Campaign.owner_id == user.id)
                                .order_by(desc(Campaign.id))).scalars().all()
    return render(request, "manager/campaigns.html", {"campaigns": campaigns, "values": values,
                                                      "errors": errors}, status_code=status_code)


@router.post("/campaigns")
def create_campaign_form(request: Request, session: SessionDep, now: NowDep, user=Manager,
                         name: Annotated[str, Form(max_length=200)] = "",
                         channel: Annotated[str, Form(max_length=20)] = "",
                         purpose: Annotated[str, Form(max_length=40)] = "",
                         voice: Annotated[str, Form(max_length=40)] = "",
                         automated: Annotated[str, Form(max_length=10)] = "",
                         caller_id: Annotated[str, Form(max_length=40)] = "",
                         script: Annotated[str, Form(max_length=5000)] = "",
                         hours: Annotated[str, Form(max_length=40)] = "",
                         cps: Annotated[str, Form(max_length=20)] = "",
                         max_concurrent: Annotated[str, Form(max_length=20)] = "",
                         start_date: Annotated[str, Form(max_length=20)] = "",
                         end_date: Annotated[str, Form(max_length=20)] = "",
                         seller: Annotated[str, Form(max_length=120)] = ""):
    values = {"name": name, "channel": channel, "purpose": purpose, "voice": voice, "automated": automated,
              "caller_id": caller_id, "script": script, "hours": hours, "cps": cps,
              "max_concurrent": max_concurrent, "start_date": start_date, "end_date": end_date, "seller": seller}
    try:
        spec = validate_campaign(campaign_input(values))
        campaign = create_campaign(session, spec, actor=user.name, at=now)
    except (CampaignError, CampaignExists) as error:
        field, message = _field_of(error)
        session.rollback()
        return _campaigns_page(request, session, user, values=values, errors={field: message}, status_code=422)
    campaign.owner_id = user.id
    session.add(campaign)
    session.flush()
    return RedirectResponse(f"/manager/campaigns/{campaign.id}", status_code=303)


def campaign_input(values: dict[str, str]) -> dict[str, Any]:
    """The form's text fields as the campaign validator takes them (blank = not given)."""
    raw: dict[str, Any] = {"name": values["name"].strip(), "channel": values["channel"],
                           "purpose": values["purpose"], "automated": values.get("automated") == "on",
                           "caller_id": values["caller_id"].strip()}
    if values.get("voice") and values["channel"] != "sms":
        raw["voice"] = values["voice"]
    if values.get("script", "").strip():
        raw["script"] = values["script"].strip()
    settings = {key: values[key].strip() for key in ("hours", "cps", "max_concurrent", "start_date", "end_date")
                if values.get(key, "").strip()}
    if values.get("seller", "").strip():
        # The seller whose consents count (and whom calls name); blank: the campaign's name.
        settings["conversation"] = {"seller_name": values["seller"].strip()}
    if settings:
        raw["settings"] = settings
    return raw


def _field_of(error: Exception) -> tuple[str, str]:
    """The form field an error names (`settings.cps` → `cps`) and its message without the prefix."""
    if isinstance(error, CampaignExists):
        return "name", str(error).removeprefix("name: ")
    field = error.field.removeprefix("settings.").replace("conversation.seller_name", "seller").split(".")[0]
    message = str(error).removeprefix(f"{error.field}: ")
    return (field if field in CAMPAIGN_FIELDS else "name"), (
        message if field in CAMPAIGN_FIELDS else f"{error.field}: {message}")


def _own_campaign(session: Session, user, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.owner_id != user.id:
        raise HTTPException(404, detail=f"no campaign {campaign_id} of yours")
    return campaign


@router.get("/campaigns/{campaign_id}")
def campaign_page(request: Request, campaign_id: int, session: SessionDep, now: NowDep, user=Manager):
    campaign = _own_campaign(session, user, campaign_id)
    imports = session.execute(select(ListImport).where(ListImport.campaign_id == campaign.id)
                              .order_by(desc(ListImport.id))).scalars().all()
    start = (now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    return render(request, "manager/campaign.html", {
        "campaign": campaign, "settings": campaign_settings(campaign), "imports": imports,
        "counters": live_counters(session, campaign.id, now), "max_upload": human_size(max_list_bytes()),
        "sim_values": {"start": start.strftime("%Y-%m-%dT%H:%MZ"), "days": "5"}, "sim_errors": {},
        **_policy_context(session, campaign.id)})


# --- warm-transfer policy -------------------------------------------------------------------------

@router.post("/campaigns/{campaign_id}/transfer-policy")
def transfer_policy_form(request: Request, campaign_id: int, session: SessionDep, now: NowDep, user=Manager,
                         wait_seconds: Annotated[str, Form(max_length=10)] = "",
                         callback_delay_seconds: Annotated[str, Form(max_length=10)] = ""):
    campaign = _own_campaign(session, user, campaign_id)
    values = {"wait_seconds": wait_seconds, "callback_delay_seconds": callback_delay_seconds}
    errors = {name: f"{value!r} is not a whole number of seconds" for name, value in values.items()
              if value.strip() and not value.strip().isdigit()}
    if not errors:
        try:
            transfers.set_policy(session, campaign.id, wait_seconds=_seconds(wait_seconds),
                                 callback_delay_seconds=_seconds(callback_delay_seconds), actor=user.name, at=now)
        except transfers.TransferError as error:
            field = "callback_delay_seconds" if str(error).startswith("callback") else "wait_seconds"
            errors[field] = str(error).removeprefix(f"{field} ")
    if errors:
        return render(request, "manager/_transfer_policy.html", {"campaign": campaign, "policy_values": values,
                                                                 "policy_errors": errors}, status_code=422)
    return render(request, "manager/_transfer_policy.html", {"campaign": campaign, "saved": True,
                                                             **_policy_context(session, campaign.id)})


def _seconds(text: str) -> int | None:
    return int(text) if text.strip() else None


def _policy_context(session: Session, campaign_id: int) -> dict:
    policy = transfers.policy_for(session, campaign_id)
    return {"policy_values": {"wait_seconds": str(policy.wait_seconds),
                              "callback_delay_seconds": str(policy.callback_delay_seconds)}, "policy_errors": {}}


# --- live panel (SSE) -------------------------------------------------------------------------------

@router.get("/campaigns/{campaign_id}/live")
async def campaign_live(request: Request, campaign_id: int, engine: EngineDep, user=Manager):
    await run_in_threadpool(_check_owner, engine, user, campaign_id)

    def render_now() -> str:
        with Session(engine) as session:
            campaign = session.get(Campaign, campaign_id)
            counters = live_counters(session, campaign_id, datetime.now(timezone.utc))
            return templates.get_template("manager/_live.html").render(campaign=campaign, counters=counters)

    return sse_response(poll_changes(request, "counters", render_now, interval=LIVE_INTERVAL_SECONDS))


def _check_owner(engine: Engine, user, campaign_id: int) -> None:
    with Session(engine) as session:
        _own_campaign(session, user, campaign_id)


# --- list upload and import report ---------------------------------------------------------------

@router.post("/campaigns/{campaign_id}/lists")
async def upload_list(request: Request, campaign_id: int, engine: EngineDep, user=Manager):
    # The size limit is the product's one (OUTBOUND_MAX_LIST_BYTES): `api.upload_limit` refuses a
    # body over it before it is read (the page shows that 413's message); the check below covers
    # a file the middleware let through by the multipart slack.
    await run_in_threadpool(_check_owner, engine, user, campaign_id)
    form = await request.form(max_files=1, max_fields=10)
    upload = form.get("file")
    if not isinstance(upload, StarletteUpload) or not upload.filename:
        return _upload_refused(request, "file: choose a CSV file to upload")
    try:
        check_list_size(upload.size)
        result = await run_in_threadpool(_import, engine, upload, campaign_id, user.name)
    except ListFileError as error:
        return _upload_refused(request, f"file: {error}" + _header_hint(error),
                               status_code=413 if isinstance(error, FileTooLarge) else 422)
    return _import_report(request, engine, result.import_id, fragment=True)


def human_size(size: int) -> str:
    for unit, factor in (("GB", 1024 ** 3), ("MB", 1024 ** 2), ("KB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


def _header_hint(error: ListFileError) -> str:
    if isinstance(error, (NoPhoneColumn, NoDataRows)) and error.header:
        return f" (columns found: {', '.join(error.header)})"
    return ""


def _import(engine: Engine, upload: StarletteUpload, campaign_id: int, actor: str):
    upload.file.seek(0)
    reader, columns = open_list(upload.file)
    return import_contacts(engine, reader, columns, campaign_id=campaign_id,
                           file_name=base_name(upload.filename, "upload.csv"), actor=actor)


def _upload_refused(request: Request, message: str, *, status_code: int = 422) -> Response:
    return render(request, "manager/_upload_error.html", {"message": message}, status_code=status_code)


@router.get("/imports/{import_id}")
def import_page(request: Request, import_id: int, engine: EngineDep, user=Manager):
    _check_import_owner(engine, user, import_id)
    return _import_report(request, engine, import_id, fragment=False)


def _import_report(request: Request, engine: Engine, import_id: int, *, fragment: bool) -> Response:
    with Session(engine) as session:
        summary = import_summary(session, import_id)
        rejects = session.execute(select(ImportReject).where(ImportReject.import_id == import_id)
                                  .order_by(ImportReject.line).limit(REJECTS_SHOWN)).scalars().all()
    template = "manager/_import_report.html" if fragment else "manager/import.html"
    return render(request, template, {"report": summary, "rejects": rejects, "shown": REJECTS_SHOWN})


@router.get("/imports/{import_id}/rejects.csv")
def rejects_csv(import_id: int, engine: EngineDep, user=Manager):
    _check_import_owner(engine, user, import_id)

    def stream() -> Iterator[str]:
        with Session(engine) as session:
            yield from iter_rejects_csv(session, import_id)

    return StreamingResponse(stream(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="import-{import_id}-rejects.csv"'})


def _check_import_owner(engine: Engine, user, import_id: int) -> None:
    with Session(engine) as session:
        record = session.get(ListImport, import_id)
        if record is None:
            raise HTTPException(404, detail=f"no import {import_id}")
        _own_campaign(session, user, record.campaign_id)


# --- simulate -------------------------------------------------------------------------------------

@router.post("/campaigns/{campaign_id}/simulate")
async def simulate_campaign(request: Request, campaign_id: int, engine: EngineDep, user=Manager,
                            start: Annotated[str, Form(max_length=40)] = "",
                            days: Annotated[str, Form(max_length=10)] = ""):
    await run_in_threadpool(_check_owner, engine, user, campaign_id)
    values, errors = {"start": start, "days": days}, {}
    start_at = _parse_instant(start)
    if start_at is None:
        errors["start"] = f"{start!r} is not an instant with a zone, e.g. 2026-11-23T14:00Z"
    if not days.strip().isdigit() or not 1 <= int(days) <= SIMULATE_MAX_DAYS:
        errors["days"] = f"{days!r}: give a whole number of days from 1 to {SIMULATE_MAX_DAYS}"
    if errors:
        return render(request, "manager/_simulate.html", {"campaign_id": campaign_id, "sim_values": values,
                                                          "sim_errors": errors}, status_code=422)
    report = await run_in_threadpool(_simulate, engine, campaign_id, start_at, int(days))
    return render(request, "manager/_simulate.html", {"campaign_id": campaign_id, "sim_values": values,
                                                      "sim_errors": {}, "result": report})


def _parse_instant(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.astimezone(timezone.utc) if value.tzinfo else None


def _simulate(engine: Engine, campaign_id: int, start: datetime, days: int) -> dict:
    from consent.registry_store import RegistryStore
    from consent.rules import load_pack
    from outbound.settings import get_settings
    from scheduler.simulate import simulate

    registry = RegistryStore(Path(get_settings().data_dir) / "registry")
    return simulate(engine, str(campaign_id), start=start, days=days, pack=load_pack(), registry=registry).to_dict()


# --- lifecycle: one fixed path per action (a `{action}` parameter would shadow /lists, /simulate) ---

def _lifecycle_route(action: str):
    def route(campaign_id: int, session: SessionDep, now: NowDep, user=Manager):
        campaign = _own_campaign(session, user, campaign_id)
        try:
            LIFECYCLE[action](session, campaign, actor=user.name, at=now)
        except InvalidTransition as error:
            raise HTTPException(409, detail=str(error)) from None
        return RedirectResponse(f"/manager/campaigns/{campaign_id}", status_code=303)

    route.__name__ = f"{action}_campaign_page"
    router.post(f"/campaigns/{{campaign_id}}/{action}")(route)


for _action in LIFECYCLE:
    _lifecycle_route(_action)
