"""422 answers that cannot themselves fail.

FastAPI's default handler echoes the rejected input in UTF-8; a body holding a lone surrogate
(a JSON `"\\ud800"` escape, which the ledger rejects because no database can store it) cannot be
encoded, so the answer to a bad request became a 500. This handler answers the same document
with non-ASCII escaped, which every input survives.

Wire it in `api.app.create_app`:  `app.add_exception_handler(RequestValidationError,
request_validation_error)`.
"""
from __future__ import annotations

import json

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response


async def request_validation_error(request: Request, exc: RequestValidationError) -> Response:
    body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")
