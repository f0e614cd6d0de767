"""Who may see a page: the API's roles (`api.auth`), answered the way a browser needs.

The role check is the API's own (`api.auth.require_page_roles`: same roles, same CSRF rule), so
pages and REST can never disagree about who may do what. It sends an anonymous browser to
`/login?next=...` (303). `PageRoute` answers every other refusal (403, 404, 409, ...) as HTML
with the same status: a page, or for an htmx request a notice to swap in; and it answers an htmx
request's login redirect with `HX-Redirect`, so the whole page navigates instead of the login
form being swapped into a fragment.
"""
from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from api.auth import csrf_token, require_page_roles


def page_user(*roles: str) -> Any:
    """A dependency: the signed-in user when their role is one of `roles` (else a redirect to
    /login or a 403 page). The user is also kept on `request.state.page_user` for the layout."""

    def user_for_page(request: Request, user=Depends(require_page_roles(*roles))):
        request.state.page_user = user
        return user

    return Depends(user_for_page)


def csrf_token_for(request: Request) -> str:
    """The CSRF token write forms of this session must echo ('' for an anonymous page)."""
    return csrf_token(request) or ""


class PageRoute(APIRoute):
    """An APIRoute whose 401 sends the browser to the login page and whose 403 is an HTML page."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as error:
                if error.status_code in (401, 303):
                    return _to_login(request, error)
                if error.status_code >= 400:
                    return _error_page(request, error)
                raise

        return page_handler


def _to_login(request: Request, error: HTTPException) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = (error.headers or {}).get("Location") or f"/login?next={quote(target, safe='')}"
    if request.headers.get("HX-Request"):
        # htmx follows HX-Redirect with a full navigation; a 303 would be swapped into the page.
        return Response(status_code=401, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


def _error_page(request: Request, error: HTTPException) -> Response:
    from api.pages.rendering import render

    name = "_error_notice.html" if request.headers.get("HX-Request") else "error.html"
    try:
        return render(request, name, {"detail": error.detail, "status": error.status_code},
                      status_code=error.status_code)
    except Exception:   # noqa: BLE001 - never let the error page hide the refusal
        return HTMLResponse(f"<p>{error.status_code}: {html.escape(str(error.detail))}</p>",
                            status_code=error.status_code)
