"""Path parameters that name a table row.

Ids are bounded to SQL's 32-bit integer: a larger number cannot name a row, and passing one to
the database fails (SQLite: OverflowError; PostgreSQL: out of range), which would be a 500
instead of the 422 it is.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import Path

MAX_ROW_ID = 2 ** 31 - 1

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="a row id")]
