"""The FastAPI application: REST under /v1, the Twilio webhooks and the pages."""
from __future__ import annotations

import asyncio
import gc
import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from api.auth_before_body import AuthenticateBeforeBody
from api.database_busy import register_database_busy
from api.upload_limit import UploadLimit
from api.validation_errors import request_validation_error

# One line per router module; each exposes `router`.
ROUTER_MODULES = (
    # First: routes are matched in this order, and the carrier's callbacks are the busiest
    # requests by far (four or five per call), so they should not be tried against every other.
    "api.routes.webhooks",
    "api.routes.gate",
    "api.routes.scrub",
    "api.routes.consent",
    "api.routes.lists",
    "api.routes.campaigns",
    "api.routes.voice",
    "api.routes.inbound_calls",
    "api.routes.conversations",
    "api.routes.conference",
    "api.routes.agents",
    "api.routes.transfers",
    "api.routes.login",
    "api.routes.users",
    "api.routes.audit",
    "api.routes.decisions",
    "api.routes.reports",
    "api.routes.dnc",
    "api.routes.contacts",
    "api.pages.rendering",      # /static: vendored htmx, its SSE extension, the stylesheet
    "api.pages.home",
    "api.pages.manager",
    "api.pages.compliance",
    "api.pages.agent",
)


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # What is loaded by now (the app, its routes, phonenumbers' and the holidays' tables, the
    # ORM's mappers) lives as long as the process. Frozen, a full collection no longer walks it:
    # those walks were most of the webhooks' p99 (bench/bench_webhooks.py: 61-90 ms, then 21 ms).
    gc.freeze()
    # Opt-outs journaled while the database could not take them are stored at start and then
    # every few seconds, here as in the worker (whichever runs first stores each once).
    from api.routes.webhooks import apply_opt_out_journal_forever

    journal_job = asyncio.create_task(apply_opt_out_journal_forever())
    try:
        yield
    finally:
        journal_job.cancel()


def create_app() -> FastAPI:
    app = FastAPI(title="outbound", version="0.1.0", lifespan=_lifespan,
                  description="Outbound campaigns behind a deterministic compliance gate.")
    # FastAPI's own 422 handler echoes the input and fails (500) on lone surrogates.
    app.add_exception_handler(RequestValidationError, request_validation_error)
    # Another writer's lock past the busy timeout: 503 with Retry-After, never a 500.
    register_database_busy(app)
    app.add_middleware(UploadLimit)
    # Outermost: an anonymous or wrong-role write is refused before its size is even considered.
    app.add_middleware(AuthenticateBeforeBody)
    for name in ROUTER_MODULES:
        app.include_router(importlib.import_module(name).router)
    return app
