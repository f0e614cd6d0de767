"""A phone number given in a path or query, as the E.164 the tables store.

A value that is not a NANP number is the caller's to fix (422 naming the field), never passed on
to SQL: PostgreSQL refuses NUL characters in a query with an error, which would be a 500.
"""
from __future__ import annotations

from fastapi import HTTPException, status

from consent.dnc import InvalidNumber, e164_of


def e164_param(phone: str, field: str = "phone") -> str:
    try:
        return e164_of(phone)
    except (InvalidNumber, ValueError, UnicodeError):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail=f"{field}: {phone!r} is not a valid US/NANP phone number") from None
