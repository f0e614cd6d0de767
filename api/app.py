"""The FastAPI application: REST under /v1 (and, later, webhooks and pages)."""
from __future__ import annotations

import importlib

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

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


def create_app() -> FastAPI:
    app = FastAPI(title="outbound", version="0.1.0",
                  description="Outbound campaigns behind a deterministic compliance gate.")
    # FastAPI's own 422 handler echoes the input and fails (500) on lone surrogates.
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.add_middleware(UploadLimit)
    for name in ROUTER_MODULES:
        app.include_router(importlib.import_module(name).router)
    return app
