"""The FastAPI application: REST under /v1 (and, later, webhooks and pages)."""
from __future__ import annotations

import importlib

from fastapi import FastAPI

# One line per router module; each exposes `router`.
ROUTER_MODULES = (
    "api.routes.gate",
)


def create_app() -> FastAPI:
    app = FastAPI(title="outbound", version="0.1.0",
                  description="Outbound campaigns behind a deterministic compliance gate.")
    for name in ROUTER_MODULES:
        app.include_router(importlib.import_module(name).router)
    return app
