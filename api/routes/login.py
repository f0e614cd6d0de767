"""Sign in and out of the pages: `/login` (form and POST) and `/logout`.

A successful sign-in sets the `outbound_session` cookie (an opaque random id; the server keeps
only its sha256, with the session's CSRF token and expiry). The login form itself is protected
against login CSRF with a double-submit cookie: the form carries a random value that must match
a cookie only this site could have set.
"""
from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine

from api.auth import SESSION_COOKIE, EngineDep, OptionalUserDep, check_csrf, get_now
from api.login_throttle import LoginThrottle
from outbound.db import session_scope
from outbound.users import SESSION_LIFETIME, login, logout

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))
LOGIN_CSRF_COOKIE = "outbound_login_csrf"
HOME_OF_ROLE = {"manager": "/manager", "compliance": "/compliance", "agent": "/agent", "admin": "/docs"}


def safe_next(target: str | None) -> str | None:
    """Only a path on this site: `//evil.example` or `https://...` would make /login an open redirect."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")) and target.isprintable():
        return target
    return None


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def _form(request: Request, *, next_url: str | None, name: str = "", error: str = "",
          status_code: int = 200) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = templates.TemplateResponse(request, "login.html", {
        "next": next_url or "", "name": name, "error": error, "form_token": token}, status_code=status_code)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="strict",
                        secure=_secure(request), path="/login")
    return response


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: Annotated[str | None, Query(max_length=2000)] = None) -> HTMLResponse:  # noqa: A002
    return _form(request, next_url=safe_next(next))


@router.post("/login")
async def login_submit(request: Request, engine: EngineDep, now: Annotated[datetime, Depends(get_now)],
                       name: Annotated[str, Form(max_length=200)] = "",
                       password: Annotated[str, Form(max_length=1000)] = "",
                       form_token: Annotated[str, Form(max_length=200)] = "",
                       next: Annotated[str, Form(max_length=2000)] = "") -> Response:  # noqa: A002
    next_url = safe_next(next)
    cookie_token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not form_token or not secrets.compare_digest(form_token, cookie_token):
        return _form(request, next_url=next_url, name=name, status_code=status.HTTP_403_FORBIDDEN,
                     error="The form expired or was not sent by this site; please sign in again.")
    user_name = name.strip()
    if not user_name or not password:
        return _form(request, next_url=next_url, name=name, status_code=422,
                     error="Enter your user name and password.")
    throttle, address = _throttle(request), request.client.host if request.client else None
    wait = throttle.wait(user_name, address, now)
    if wait is not None:
        minutes = max(1, -(-int(wait.total_seconds()) // 60))
        response = _form(request, next_url=next_url, name=name, status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                         error=f"Too many failed sign-ins; try again in {minutes} minute{'s' if minutes > 1 else ''}.")
        response.headers["Retry-After"] = str(max(1, int(wait.total_seconds())))
        return response
    result = await run_in_threadpool(_login, engine, user_name, password, now)
    if result is None:
        throttle.failed(user_name, address, now)
        return _form(request, next_url=next_url, name=name, status_code=status.HTTP_401_UNAUTHORIZED,
                     error="Wrong user name or password.")
    throttle.succeeded(user_name)
    session_id, user = result
    response = RedirectResponse(next_url or HOME_OF_ROLE.get(user.role, "/"), status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(SESSION_COOKIE, session_id, max_age=int(SESSION_LIFETIME.total_seconds()),
                        httponly=True, samesite="lax", secure=_secure(request), path="/")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


def _login(engine: Engine, name: str, password: str, now: datetime):
    with session_scope(engine) as session:
        return login(session, name, password, at=now)


def _throttle(request: Request) -> LoginThrottle:
    # One per app, so each app (and each test's) counts its own failures.
    throttle = getattr(request.app.state, "login_throttle", None)
    if throttle is None:
        throttle = request.app.state.login_throttle = LoginThrottle()
    return throttle


@router.get("/logout", response_class=HTMLResponse)
def logout_page(request: Request, user: OptionalUserDep) -> Response:
    if user is None:
        return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    return templates.TemplateResponse(request, "login.html", {"logout": True, "user": user,
                                                              "csrf_token": user.csrf_token or ""})


@router.post("/logout")
async def logout_submit(request: Request, engine: EngineDep, user: OptionalUserDep) -> Response:
    # Logging out is a write: without the CSRF check any site could sign a user out.
    if user is not None and user.via == "session":
        await check_csrf(request, user)
        session_id = request.cookies.get(SESSION_COOKIE, "")
        await run_in_threadpool(_logout, engine, session_id)
    response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _logout(engine: Engine, session_id: str) -> None:
    with session_scope(engine) as session:
        logout(session, session_id)
