"""POST /v1/scrub: the `outbound scrub` check over HTTP, before any campaign runs.

The upload is copied to a temporary file in chunks (never read whole into memory here); the
answer is the report (`format=json`, counts per source) or the per-row CSV (`format=csv`).
Managers (before a campaign) and compliance may scrub; nothing is stored.
"""
from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, File, HTTPException, Query, UploadFile
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from api.auth import CampaignReader
from consent.registry_store import RegistryStore
from consent.scrub import ScrubInputError, scrub_csv
from outbound.db import ensure_schema, get_engine, session_scope
from outbound.settings import get_settings

router = APIRouter(tags=["dnc"])
CHUNK_BYTES = 1 << 20


@router.post("/v1/scrub", summary="How many rows each DNC source would block, per row or in total",
             responses={422: {"description": "no phone column, or a file that is not CSV text"}})
def scrub_upload(user: CampaignReader, file: Annotated[UploadFile, File(description="the CSV list to scrub")],
                 format: Annotated[Literal["json", "csv"], Query(description="json: counts; csv: every row")] = "json"):
    folder = Path(tempfile.mkdtemp(prefix="outbound-scrub-"))
    source, result = folder / "in.csv", folder / "scrubbed.csv"
    with source.open("wb") as out:
        shutil.copyfileobj(file.file, out, CHUNK_BYTES)
    engine = get_engine()
    ensure_schema(engine)
    store = RegistryStore(Path(get_settings().data_dir) / "registry")
    try:
        with session_scope(engine) as session:
            report = scrub_csv(source, result, session, store, now=datetime.now(timezone.utc))
    except ScrubInputError as error:
        shutil.rmtree(folder, ignore_errors=True)
        raise HTTPException(422, detail=str(error).replace(str(source), file.filename or "upload")) from None
    if format == "csv":
        return FileResponse(result, media_type="text/csv", filename="scrubbed.csv",
                            background=BackgroundTask(shutil.rmtree, folder, True))
    shutil.rmtree(folder, ignore_errors=True)
    return report.to_dict()
