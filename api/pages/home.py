"""`/`: each signed-in user's start page is their role's area; anyone else signs in first."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from api.auth import OptionalUserDep
from api.routes.login import HOME_OF_ROLE

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(user: OptionalUserDep) -> RedirectResponse:
    if user is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(HOME_OF_ROLE.get(user.role, "/login"), status_code=303)
