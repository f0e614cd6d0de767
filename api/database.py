"""The database and the clock for REST routes, as dependencies a test can override once.

`get_api_engine` is also what `api.auth` reads users from, so overriding it points both the
routes and their authentication at a test database.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Annotated

from fastapi import Depends
from sqlalchemy import Engine
from sqlmodel import Session

from outbound.db import get_engine, session_scope


def get_api_engine() -> Engine:
    return get_engine()


def get_api_session(engine: Annotated[Engine, Depends(get_api_engine)]) -> Iterator[Session]:
    """A session whose transaction commits when the route returns, before the response is sent
    (SessionDep: scope="function"), so a client that reads right after a write sees it; rolls back
    if the route raises."""
    with session_scope(engine) as session:
        yield session


def get_api_now() -> datetime:
    return datetime.now(timezone.utc)


EngineDep = Annotated[Engine, Depends(get_api_engine)]
SessionDep = Annotated[Session, Depends(get_api_session, scope="function")]   # committed before the response
NowDep = Annotated[datetime, Depends(get_api_now)]
