"""Who is calling, and may they: API tokens, browser sessions, roles and CSRF.

Credentials, in this order:
- `Authorization: Bearer <token>` (API clients). When the header is present it alone counts: a
  wrong token is 401 even if a session cookie is also sent.
- the `outbound_session` cookie (the pages), made by `POST /login`.

Roles (`outbound.users.Role`): manager, compliance, agent, admin. A route names the roles it
admits with `require_roles(...)`; nobody else gets in. `admin` is deliberately NOT a superuser:
it manages users and tokens, and an administrator who also runs campaigns or reads reports gets
a second user with that role. Least privilege keeps the admin token (the most dangerous one)
out of daily use, and every audit line names a person acting in one capacity.

CSRF: a browser sends cookies with any request, even one a hostile page makes it send, so a
cookie-authenticated write (any method but GET/HEAD/OPTIONS) must echo the session's own random
token, as the `X-CSRF-Token` header (htmx: `hx-headers`) or a `csrf_token` form field (plain
forms: `{{ csrf_token(request) }}`). Bearer requests are exempt: browsers never add that header
on their own. The session cookie is also HttpOnly and SameSite=Lax.

Answers: 401 with `WWW-Authenticate: Bearer` when there is no valid credential, 403 when the
user's role is not admitted or the CSRF token is missing or wrong. Pages use `require_page_roles`,
which sends an anonymous browser to `/login?next=...` instead of answering 401.
"""
from __future__ import annotations

import functools
import hmac
from datetime import datetime, timezone
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from api.database import get_api_engine
from outbound.db import session_scope
from outbound.users import CurrentUser, Role, user_for_session, user_for_token

SESSION_COOKIE = "outbound_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

bearer_scheme = HTTPBearer(auto_error=False, description="an API token from `outbound token create`")
session_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False,
                              description="browser session from POST /login (writes need X-CSRF-Token)")


# The database users, tokens and sessions are read from: the REST routes' own, so one override
# (`app.dependency_overrides[get_api_engine]`) points a test's routes and authentication at it.
get_auth_engine = get_api_engine


def get_now() -> datetime:
    return datetime.now(timezone.utc)


EngineDep = Annotated[Engine, Depends(get_auth_engine)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]
CookieDep = Annotated[str | None, Security(session_scheme)]


def _lookup(engine: Engine, credentials: HTTPAuthorizationCredentials | None, session_id: str | None,
            at: datetime) -> CurrentUser | None:
    with session_scope(engine) as session:
        if credentials is not None:
            return user_for_token(session, credentials.credentials)
        if session_id:
            return user_for_session(session, session_id, at=at)
    return None


async def current_user(request: Request, engine: EngineDep, credentials: BearerDep,
                       session_id: CookieDep) -> CurrentUser | None:
    """The authenticated user, or None. Cached per request (FastAPI dependency cache)."""
    if request.headers.get("authorization") and credentials is None:
        return None                    # a scheme other than Bearer: not a credential here
    user = await run_in_threadpool(_lookup, engine, credentials, session_id, get_now())
    request.state.user = user
    return user


OptionalUserDep = Annotated[CurrentUser | None, Depends(current_user)]


async def authenticate(request: Request) -> tuple[CurrentUser | None, bool]:
    """`current_user` outside dependency solving (`api.auth_before_body`, before the body is
    read): the user or None, and whether a Bearer credential was sent. The same credentials and
    database (a test's override of `get_auth_engine` included)."""
    credentials = await bearer_scheme(request)
    session_id = await session_scheme(request)
    engine = request.app.dependency_overrides.get(get_auth_engine, get_auth_engine)()
    return await current_user(request, engine, credentials, session_id), credentials is not None


def unauthorized(has_credential: bool) -> HTTPException:
    value = 'Bearer error="invalid_token"' if has_credential else "Bearer"
    return HTTPException(status.HTTP_401_UNAUTHORIZED, headers={"WWW-Authenticate": value},
                         detail="authentication required: send `Authorization: Bearer <token>` "
                                "(see `outbound token create`) or sign in at /login")


def check_role(user: CurrentUser, allowed: frozenset[str]) -> None:
    if user.role not in allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail=f"role {user.role!r} may not do this; it needs {' or '.join(sorted(allowed))}")


async def check_csrf(request: Request, user: CurrentUser) -> None:
    """Refuse a cookie-authenticated write that does not echo the session's CSRF token."""
    if user.via != "session" or request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(FORM_TYPES):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not user.csrf_token or not hmac.compare_digest(sent, user.csrf_token):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail=f"CSRF token missing or wrong: send the {CSRF_HEADER} header or the "
                                   f"{CSRF_FIELD} form field of this session")


def _allowed(roles: tuple[str, ...]) -> frozenset[str]:
    if not roles:
        raise ValueError("require_roles: name at least one role")
    return frozenset(Role(role).value for role in roles)    # a misspelt role fails at import


def require_roles(*roles: str) -> Any:
    """A dependency admitting only users with one of `roles`; it returns the `CurrentUser`.

    The same roles give the same callable, so FastAPI runs it once per request however many
    places ask for it. It carries `.roles` (a frozenset) so tests can read what a route admits."""
    return _role_dependency(_allowed(roles))


@functools.cache
def _role_dependency(allowed: frozenset[str]) -> Any:
    async def dependency(request: Request, user: OptionalUserDep, credentials: BearerDep) -> CurrentUser:
        if user is None:
            raise unauthorized(credentials is not None)
        check_role(user, allowed)
        await check_csrf(request, user)
        return user

    dependency.roles = allowed
    dependency.__name__ = f"require_{'_or_'.join(sorted(allowed))}"
    return dependency


def require_page_roles(*roles: str) -> Any:
    """`require_roles` for HTML pages: an anonymous browser is sent to the login page (303)."""
    return _page_dependency(_allowed(roles))


@functools.cache
def _page_dependency(allowed: frozenset[str]) -> Any:
    async def dependency(request: Request, user: OptionalUserDep) -> CurrentUser:
        if user is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise HTTPException(status.HTTP_303_SEE_OTHER, detail="sign in first",
                                headers={"Location": f"/login?next={quote(target, safe='')}"})
        check_role(user, allowed)
        await check_csrf(request, user)
        return user

    dependency.roles = allowed
    dependency.__name__ = f"page_{'_or_'.join(sorted(allowed))}"
    return dependency


def csrf_token(request: Request) -> str:
    """The CSRF token of the signed-in browser session, for a hidden form field ('' otherwise)."""
    user = getattr(request.state, "user", None)
    return (user.csrf_token or "") if user is not None else ""


def user_with(*roles: str) -> Any:
    """`Annotated[CurrentUser, Depends(require_roles(*roles))]`, for route signatures."""
    return Annotated[CurrentUser, Depends(require_roles(*roles))]


# The role sets the routes use; one name per job, so the route table reads like issue 6.
ManagerUser = user_with("manager")
ComplianceUser = user_with("compliance")
AgentUser = user_with("agent")
AdminUser = user_with("admin")
CampaignReader = user_with("manager", "compliance")      # a manager sees only their own campaigns
ReportReader = user_with("manager", "compliance")        # a manager's reports are filtered to their own
