"""Column types shared by every table: instants are stored in UTC and come back aware."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Column
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Field


class UTCDateTime(TypeDecorator):
    """Accepts only aware datetimes; returns aware UTC ones, also from SQLite, which drops zones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store instants with a time zone (UTC)")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def instant_field(nullable: bool = False, index: bool = False):
    """A SQLModel field holding a UTC instant (UTCDateTime), the one spelling every table uses."""
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))
