"""Do-not-call data for compliance: the REST side of `outbound dnc`.

Status and freshness of every source; which lists hold one number; the internal list (add, and
remove with a reason: stamped, never deleted); and loading state, litigator and national
registry files. Uploads are copied to a temporary folder in chunks and read from there, as the
CLI reads files; every load and change is audited with the authenticated user as actor. A load is
all or nothing: a file with a malformed line is answered 422 with the bad lines (line, text,
why) and changes nothing; a `synced_at` in the future is refused.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Path, UploadFile, status
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from api.ascii_json import AsciiJSONResponse
from api.auth import ComplianceUser, require_roles
from api.database import NowDep, SessionDep
from api.phone_param import e164_param
from consent import dnc
from consent.registry_store import MalformedInput, RegistryInputError, RegistryStore, RegistryUnavailable
from outbound import audit, resubscribe_requests
from outbound.settings import get_settings

router = APIRouter(prefix="/v1/dnc", tags=["dnc"], dependencies=[Depends(require_roles("compliance"))])
CHUNK_BYTES = 1 << 20
UNUSABLE = {422: {"description": "unusable input; the message says what to fix"}}
StatePath = Annotated[str, Path(pattern=r"^[A-Za-z]{2}$", description="two-letter state code, e.g. FL")]


def registry_store() -> RegistryStore:
    return RegistryStore(FilePath(get_settings().data_dir) / "registry")


class InternalChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: str = Field(min_length=1, max_length=40)
    reason: str = Field(min_length=1, max_length=500, description="who asked, how (add); why it may be called again (remove)")


class InternalEntryOut(BaseModel):
    phone: str
    changed: bool = Field(description="false when the number was already on the list")


@contextmanager
def _dnc_errors_as_422(names: dict[str, str] | None = None) -> Iterator[None]:
    """Domain errors as 422; a message naming a temporary copy names the uploaded file instead."""
    try:
        yield
    except (MalformedInput, dnc.MalformedList) as error:
        detail = error.to_dict()
        for temporary, uploaded in (names or {}).items():
            detail["error"] = detail["error"].replace(temporary, uploaded)
            for sample in detail.get("malformed_samples", []):
                sample["file"] = sample["file"].replace(temporary, uploaded)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail) from None
    except (dnc.DncError, RegistryInputError, RegistryUnavailable, ValueError, UnicodeError) as error:
        message = str(error)
        for temporary, uploaded in (names or {}).items():
            message = message.replace(temporary, uploaded)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=message) from None


@router.get("/status", summary="Each source's size, version and age; stale past 31 days")
def get_status(session: SessionDep, now: NowDep) -> list[dict[str, Any]]:
    return dnc.status(session, registry_store(), now)


@router.get("/numbers/{phone}", responses=UNUSABLE, summary="Which lists hold this number now")
def get_number(phone: Annotated[str, Path(max_length=40)], session: SessionDep) -> dict[str, Any]:
    e164 = e164_param(phone)
    # The active internal entry, with any START received while it stood (a request to review).
    entry = resubscribe_requests.entry_with_requests(session, e164, dnc.internal_entry(session, e164))
    return {"phone": e164, "national": registry_store().national_fact(e164), **dnc.sources_listing(session, e164),
            "internal_entry": entry}


@router.post("/internal", responses=UNUSABLE, summary="Put a number on the internal list (200 if already on it)")
def add_internal(body: InternalChange, session: SessionDep, now: NowDep, user: ComplianceUser) -> InternalEntryOut:
    with _dnc_errors_as_422():
        entry, added = dnc.add_internal(session, body.phone, reason=_text(body.reason, "reason"), actor=user.name,
                                        at=now, audit=audit.append, via="api")
    return InternalEntryOut(phone=entry.phone, changed=added)


@router.post("/internal/remove", responses={**UNUSABLE, 404: {"description": "the number is not on the list"}},
             summary="Take a number off the internal list (stamped with who and why, never deleted)")
def remove_internal(body: InternalChange, session: SessionDep, now: NowDep, user: ComplianceUser) -> InternalEntryOut:
    try:
        entries = dnc.remove_internal(session, body.phone, reason=_text(body.reason, "reason"),
                                      actor=user.name, at=now, audit=audit.append)
    except dnc.NotListed as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None
    except dnc.DncError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
    return InternalEntryOut(phone=entries[0].phone, changed=True)


def _text(value: str, field: str) -> str:
    # NUL and lone surrogates cannot be stored (PostgreSQL refuses them): the client's to fix.
    if "\x00" in value or re.search(r"[\ud800-\udfff]", value):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{field}: not valid text")
    return value


# --- file loads -------------------------------------------------------------------------------

@contextmanager
def _uploaded(files: list[UploadFile]) -> Iterator[dict[str, str]]:
    """The uploads as files in a fresh temporary folder: {temporary path: the name uploaded}.
    The (sanitised) name is kept in the copy's name, for reports and for `.zip` detection."""
    folder = FilePath(tempfile.mkdtemp(prefix="outbound-dnc-"))
    try:
        names = {}
        for index, upload in enumerate(files):
            name = re.sub(r"[^A-Za-z0-9._-]", "_", FilePath(upload.filename or "").name)[-100:] or "upload.txt"
            path = folder / f"{index:03d}-{name}"
            with path.open("wb") as out:
                shutil.copyfileobj(upload.file, out, CHUNK_BYTES)
            names[str(path)] = name
        yield names
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _synced(value: datetime | None, now: datetime) -> datetime:
    """The data's sync date: with a zone, and never later than the load."""
    if value is not None and value.tzinfo is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="synced_at: give a time zone (e.g. Z)")
    if value is not None and value > now:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail=f"synced_at {value.isoformat()} is in the future (now {now.isoformat()}): "
                                   "give when the data was actually obtained")
    return value or now


SyncedForm = Annotated[datetime | None, Form(description="when the data was obtained (default now)")]
VersionForm = Annotated[str | None, Form(max_length=200, description="the list's version as published")]


def _list_load(session: Session, files: list[UploadFile], load: Callable[[FilePath], dnc.ListImportReport]) -> dict:
    with _uploaded(files) as names, _dnc_errors_as_422(names):
        [path] = names
        report = load(FilePath(path))
        report.file = names[path]
    return report.to_dict()


@router.post("/state/{state}", responses=UNUSABLE, response_class=AsciiJSONResponse,
             summary="Load a state's list; it replaces that state's previous load")
def load_state_list(state: StatePath, file: Annotated[UploadFile, File()], session: SessionDep, now: NowDep,
                    user: ComplianceUser, version: VersionForm = None, synced_at: SyncedForm = None) -> dict[str, Any]:
    synced = _synced(synced_at, now)
    return _list_load(session, [file], lambda path: dnc.import_state_list(
        session, state, path, at=now, actor=user.name, audit=audit.append,
        version=_text(version, "version") if version else None, synced_at=synced))


@router.post("/litigator", responses=UNUSABLE, response_class=AsciiJSONResponse,
             summary="Load the litigator list; it replaces the previous load")
def load_litigator_list(file: Annotated[UploadFile, File()], session: SessionDep, now: NowDep,
                        user: ComplianceUser, version: VersionForm = None,
                        synced_at: SyncedForm = None) -> dict[str, Any]:
    synced = _synced(synced_at, now)
    return _list_load(session, [file], lambda path: dnc.import_litigator_list(
        session, path, at=now, actor=user.name, audit=audit.append,
        version=_text(version, "version") if version else None, synced_at=synced))


@router.post("/national", responses=UNUSABLE, response_class=AsciiJSONResponse,
             summary="Load full lists: each area code in the files replaces that area code (plain or zipped)")
def load_national(files: Annotated[list[UploadFile], File()], session: SessionDep, now: NowDep,
                  user: ComplianceUser, synced_at: SyncedForm = None,
                  replace_all: Annotated[bool, Form(description="the files are the whole registry: drop the "
                                                    "area codes they do not hold")] = False) -> dict[str, Any]:
    synced, store = _synced(synced_at, now), registry_store()
    with _uploaded(files) as names, _dnc_errors_as_422(names):
        report = store.ingest_full([FilePath(path) for path in names], synced_at=synced,
                                   replace_all=replace_all, now=now)
    loaded = {f.sha256 for f in report.files}
    dnc.record_national_load(session, kind="national", version=report.version,
                             files=[f for f in store.manifest()["files"] if f["sha256"] in loaded],
                             entries=report.entries, synced_at=synced, at=now, actor=user.name, audit=audit.append)
    return report.to_dict()


@router.post("/national/changes", responses=UNUSABLE, response_class=AsciiJSONResponse,
             summary="Apply national registry change lists")
def load_national_changes(files: Annotated[list[UploadFile], File()], session: SessionDep, now: NowDep,
                          user: ComplianceUser, synced_at: SyncedForm = None) -> dict[str, Any]:
    at, store = _synced(synced_at, now), registry_store()
    with _uploaded(files) as names, _dnc_errors_as_422(names):
        report = store.apply_changes([FilePath(path) for path in names], at=at, now=now)
    names = {FilePath(f.path).name for f in report.files if not f.skipped}
    if names:
        changes = [c for c in store.manifest()["changes"] if c["name"] in names]
        dnc.record_national_load(session, kind="national_changes", version=report.version, files=changes,
                                 entries=report.entries, synced_at=at, at=now, actor=user.name, audit=audit.append)
    return report.to_dict()
