"""503 with Retry-After when another writer kept the database's write lock past the bound.

SQLite has one writer at a time. A request that waited its whole busy timeout (a large import or
a worker batch holding the lock) has changed nothing (its transaction was rolled back), so it is
safe to send again: the client is told so and when, instead of a 500 naming SQLite's internals.
Any other database error is not the client's to retry and stays a 500 (a bug to fix).

Wire it in `api.app.create_app`:  `register_database_busy(app)`.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from sqlalchemy.exc import OperationalError
from starlette.responses import JSONResponse, Response

from outbound.db import BUSY_RETRY_AFTER_SECONDS, DatabaseBusy, is_database_busy

log = logging.getLogger(__name__)


async def database_busy(request: Request, exc: Exception) -> Response:
    if not is_database_busy(exc):
        raise exc
    log.warning("%s %s: database busy, answered 503: %s", request.method, request.url.path, exc)
    message = exc if isinstance(exc, DatabaseBusy) else DatabaseBusy()
    return JSONResponse({"detail": str(message)}, status_code=503,
                        headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)})


def register_database_busy(app: FastAPI) -> None:
    app.add_exception_handler(OperationalError, database_busy)
    app.add_exception_handler(DatabaseBusy, database_busy)
