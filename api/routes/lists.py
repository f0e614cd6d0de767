"""REST routes of contact-list imports. Thin: the work is `outbound.lists`.

The upload is multipart: Starlette spools the file part to a temporary file (in memory up to
1 MB, then on disk) while it streams in, and the importer reads that file in chunks, so no
upload is ever held whole in memory. The route is a plain `def`: FastAPI runs it in a worker
thread, so a long import does not stall the event loop.

No authentication yet (a later issue adds roles): the actor is the `X-Actor` header, `api` when
absent.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Header, HTTPException, UploadFile, status
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine
from sqlmodel import Session

from outbound.db import get_engine, session_scope
from outbound.lists import (
    ImportNotFound, ListFileError, NoDataRows, NoPhoneColumn, import_contacts, import_summary,
    iter_rejects_csv, open_list, parse_column_map,
)
from outbound.models import Campaign

router = APIRouter(prefix="/v1", tags=["lists"])


def get_import_engine() -> Engine:
    return get_engine()


def get_actor(x_actor: Annotated[str | None, Header(max_length=200)] = None) -> str:
    return (x_actor or "").strip() or "api"


EngineDep = Annotated[Engine, Depends(get_import_engine)]
ActorDep = Annotated[str, Depends(get_actor)]


@router.post("/campaigns/{campaign_id}/lists", status_code=status.HTTP_201_CREATED)
def upload_list(campaign_id: int, file: Annotated[UploadFile, File(description="the CSV contact list")],
                engine: EngineDep, actor: ActorDep,
                map: Annotated[list[str], Form(description="COLUMN=FIELD, repeatable")] = []) -> dict:  # noqa: A002,B006
    """Import a CSV contact list into the campaign; answers the import's counts and report links."""
    with session_scope(engine) as session:
        if session.get(Campaign, campaign_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no campaign with id {campaign_id}")
    try:
        reader, columns = open_list(file.file, parse_column_map(map))
    except ListFileError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=_file_error(error)) from None
    result = import_contacts(engine, reader, columns, campaign_id=campaign_id,
                             file_name=file.filename or "upload.csv", actor=actor)
    return {"import_id": result.import_id, "campaign_id": campaign_id, **result.summary(),
            "report_url": f"/v1/imports/{result.import_id}",
            "rejects_url": f"/v1/imports/{result.import_id}/rejects.csv"}


@router.get("/imports/{import_id}")
def get_import(import_id: int, engine: EngineDep) -> dict:
    """Counts of one import: accepted, duplicates, rejected by reason."""
    with session_scope(engine) as session:
        try:
            return import_summary(session, import_id)
        except ImportNotFound as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None


@router.get("/imports/{import_id}/rejects.csv")
def get_rejects_csv(import_id: int, engine: EngineDep) -> StreamingResponse:
    """Every rejected row: line, reason and the original columns, safe to open in a spreadsheet."""
    with session_scope(engine) as session:
        try:
            import_summary(session, import_id)
        except ImportNotFound as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None
    return StreamingResponse(
        _stream_rejects(engine, import_id), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="import-{import_id}-rejects.csv"'})


def _stream_rejects(engine: Engine, import_id: int) -> Iterator[str]:
    # The session lives as long as the streamed body, not the request handler.
    with Session(engine) as session:
        yield from iter_rejects_csv(session, import_id)


def _file_error(error: ListFileError) -> dict:
    detail = {"code": error.code, "message": str(error)}
    if isinstance(error, (NoPhoneColumn, NoDataRows)):
        detail["header"] = list(error.header)
    return detail
