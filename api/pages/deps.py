"""Dependencies shared by the page routers: the database and the clock (both injectable)."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Annotated

from fastapi import Depends
from sqlalchemy import Engine
from sqlmodel import Session

from outbound.db import ensure_schema, get_engine, session_scope

_upgraded: set[str] = set()


def get_pages_engine() -> Engine:
    engine = get_engine()
    key = str(engine.url)
    if key not in _upgraded:          # a fresh installation's first page view creates the schema
        ensure_schema(engine)
        _upgraded.add(key)
    return engine


def get_pages_session(engine: Annotated[Engine, Depends(get_pages_engine)]) -> Iterator[Session]:
    with session_scope(engine) as session:
        yield session


def get_pages_now() -> datetime:
    return datetime.now(timezone.utc)


EngineDep = Annotated[Engine, Depends(get_pages_engine)]
# scope="function": the transaction commits when the route returns, before the response is sent.
# With the default scope it commits after sending, and a browser following the 303 of a write
# could load the next page before the write is visible.
SessionDep = Annotated[Session, Depends(get_pages_session, scope="function")]
NowDep = Annotated[datetime, Depends(get_pages_now)]
