"""Templates and the helpers every page uses: rendering with the user and CSRF token, flash-free
form errors, and the vendored static files.

Autoescape is on for every template (Jinja2Templates enables it for .html): anything that came
from a list, a caller or a form is shown as text, never as markup.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from api.auth import CSRF_FIELD, CSRF_HEADER
from api.pages.access import csrf_token_for

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png"}

templates = Jinja2Templates(directory=str(TEMPLATE_DIR))


def _when(value: Any) -> str:
    """An instant as `2026-07-15 16:00:00 UTC` (storage is UTC; the page says so)."""
    if value is None or value == "":
        return "–"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _pretty_json(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


templates.env.filters["when"] = _when
templates.env.filters["percent"] = _percent
templates.env.filters["pretty_json"] = _pretty_json


def render(request: Request, name: str, context: dict[str, Any] | None = None, *,
           status_code: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    """Render `name` with the signed-in user and the CSRF token every write form carries."""
    # `user` as the role check left it; a 403 page falls back to who is signed in.
    user = getattr(request.state, "page_user", None) or getattr(request.state, "user", None)
    context = {"user": user, **(context or {})}
    context.setdefault("csrf_token", csrf_token_for(request))
    context.setdefault("csrf_header", CSRF_HEADER)
    context.setdefault("csrf_field", CSRF_FIELD)
    return templates.TemplateResponse(request, name, context, status_code=status_code, headers=headers)


# --- static files (vendored htmx, its SSE extension, the stylesheet) ---------------------------

router = APIRouter(include_in_schema=False)


@router.get("/static/{path:path}")
def static_file(path: str) -> FileResponse:
    # Resolved and checked against the static folder: `../` cannot leave it.
    target = (STATIC_DIR / path).resolve()
    if STATIC_DIR not in target.parents or not target.is_file() or target.suffix not in STATIC_TYPES:
        raise HTTPException(404, detail=f"no static file {path!r}")
    return FileResponse(target, media_type=STATIC_TYPES[target.suffix],
                        headers={"Cache-Control": "public, max-age=3600"})
