"""A write to /v1 is authenticated, and its role checked, before a byte of its body is read.

FastAPI reads (and for a multipart upload spools to disk) the whole body before it solves a
route's dependencies, so `require_roles` alone answered an anonymous 300 MB upload 401 only
after taking it in. This middleware answers first: for a write (POST, PUT, PATCH, DELETE) under
/v1 that is not a Twilio webhook (those are authenticated by the signature over their body, and
held to 64 KB by `api.upload_limit`), it finds the route, and when the route names roles it
looks the caller up (the same `Authorization: Bearer` token or session cookie, the same
`api.auth` rules) and answers 401 or 403 without reading the body. The route's own dependency
still runs afterwards, with the CSRF check: this is a gate in front of it, not a replacement.
"""
from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import authenticate, check_role, unauthorized
from api.upload_limit import WEBHOOK_PREFIXES

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuthenticateBeforeBody:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes: list[tuple[object, list[frozenset[str]]]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WRITE_METHODS and _guarded(scope["path"]):
            refusal = await self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _refusal(self, scope: Scope) -> JSONResponse | None:
        roles = self._roles_of(scope)
        if not roles:
            return None
        request = Request(scope)          # no receive: the body cannot be read from here
        user, has_credential = await authenticate(request)
        try:
            if user is None:
                raise unauthorized(has_credential)
            for allowed in roles:
                check_role(user, allowed)
        except HTTPException as error:
            return JSONResponse({"detail": error.detail}, status_code=error.status_code,
                                headers={**(error.headers or {}), "Connection": "close"})
        return None

    def _roles_of(self, scope: Scope) -> list[frozenset[str]]:
        if self._routes is None:
            self._routes = _route_roles(scope["app"].router.routes)
        for context, roles in self._routes:
            match, _child = context.matches(scope)
            if match == Match.FULL:
                return roles
        return []


def _guarded(path: str) -> bool:
    return path.startswith("/v1/") and not path.startswith(WEBHOOK_PREFIXES)


def _route_roles(routes) -> list[tuple[object, list[frozenset[str]]]]:
    """Each /v1 API route with the role sets of its `require_roles` dependencies (all must hold)."""
    table = []
    for context in iter_route_contexts(routes):
        if isinstance(context.original_route, APIRoute) and (context.path or "").startswith("/v1/"):
            table.append((context, _declared_roles(context.dependant)))
    return table


def _declared_roles(dependant) -> list[frozenset[str]]:
    found, pending = [], [dependant]
    while pending:
        node = pending.pop()
        roles = getattr(node.call, "roles", None)
        if roles is not None:
            found.append(frozenset(roles))
        pending.extend(node.dependencies)
    return found
