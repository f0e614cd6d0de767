"""REST routes of contact-list imports. Thin: the work is `outbound.lists`.

The upload is multipart: Starlette spools the file part to a temporary file (in memory up to
1 MB, then on disk) while it streams in, and the importer reads that file in chunks, so no
upload is ever held whole in memory. The route is a plain `def`: FastAPI runs it in a worker
thread, so a long import does not stall the event loop.

Roles: a manager uploads to, and reads the imports of, the campaigns they own; compliance reads
every import. The audit actor is the authenticated user's name.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, HTTPException, Path, UploadFile, status
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine
from sqlmodel import Session

from api.auth import CampaignReader, ManagerUser
from api.scoping import visible_campaign
from api.upload_names import base_name
from outbound.db import get_engine, session_scope
from outbound.lists import (
    MAX_STORED_REJECTS_PER_REASON, FileTooLarge, ImportNotFound, ListFileError, NoDataRows, NoPhoneColumn, check_list_size, import_contacts,
    import_summary, iter_rejects_csv, open_list, parse_column_map,
)

router = APIRouter(prefix="/v1", tags=["lists"])


def get_import_engine() -> Engine:
    return get_engine()


EngineDep = Annotated[Engine, Depends(get_import_engine)]


@router.post("/campaigns/{campaign_id}/lists", status_code=status.HTTP_201_CREATED)
def upload_list(campaign_id: Annotated[int, Path(ge=1, le=2 ** 31 - 1)], file: Annotated[UploadFile, File(description="the CSV contact list")],
                engine: EngineDep, user: ManagerUser,
                map: Annotated[list[str], Form(description="COLUMN=FIELD, repeatable")] = []) -> dict:  # noqa: A002,B006
    """Import a CSV contact list into the campaign; answers the import's counts and report links."""
    with session_scope(engine) as session:
        visible_campaign(session, user, campaign_id)
    try:
        check_list_size(file.size)
        reader, columns = open_list(file.file, parse_column_map(map))
    except FileTooLarge as error:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=_file_error(error)) from None
    except ListFileError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=_file_error(error)) from None
    result = import_contacts(engine, reader, columns, campaign_id=campaign_id,
                             file_name=base_name(file.filename, "upload.csv"), actor=user.name)
    return {"import_id": result.import_id, "campaign_id": campaign_id, **result.summary(),
            # Every reject is counted above; the report keeps this many rows of each reason.
            "rejects_stored_per_reason": MAX_STORED_REJECTS_PER_REASON,
            "report_url": f"/v1/imports/{result.import_id}",
            "rejects_url": f"/v1/imports/{result.import_id}/rejects.csv"}


@router.get("/imports/{import_id}")
def get_import(import_id: Annotated[int, Path(ge=1, le=2 ** 31 - 1)], engine: EngineDep, user: CampaignReader) -> dict:
    """Counts of one import: accepted, duplicates, rejected by reason."""
    with session_scope(engine) as session:
        return _visible_import(session, user, import_id)


def _visible_import(session: Session, user, import_id: int) -> dict:
    try:
        summary = import_summary(session, import_id)
    except ImportNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None
    try:
        visible_campaign(session, user, summary["campaign_id"])
    except HTTPException:
        # Another manager's import is answered as if it did not exist.
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no list import with id {import_id}") from None
    return summary


@router.get("/imports/{import_id}/rejects.csv")
def get_rejects_csv(import_id: Annotated[int, Path(ge=1, le=2 ** 31 - 1)], engine: EngineDep, user: CampaignReader) -> StreamingResponse:
    """Every rejected row: line, reason and the original columns, safe to open in a spreadsheet."""
    with session_scope(engine) as session:
        _visible_import(session, user, import_id)
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
