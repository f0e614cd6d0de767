"""Blocked and deferred attempts by reason, state, campaign and time: the REST side of
`outbound.reports` (the compliance pages use the same module).

Compliance sees every campaign; a manager the same reports restricted to the campaigns they own.
The CSV export quotes every cell that a spreadsheet would run as a formula.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlmodel import Session

from api.auth import ReportReader
from api.database import EngineDep, SessionDep
from api.scoping import owner_scope
from outbound.reports import (
    REPORT_VERDICTS, ReportFilter, ReportFilterError, iter_report_csv, reasons_over_time, report_page, summarize,
)

router = APIRouter(prefix="/v1", tags=["reports"])


def report_filter(user: ReportReader,
                  verdict: Annotated[list[Literal["allow", "defer", "block"]], Query(
                      description="repeatable; default block and defer")] = [],  # noqa: B006
                  campaign_id: Annotated[int | None, Query(ge=1, le=2 ** 31 - 1)] = None,
                  reason: Annotated[str | None, Query(max_length=64, description="a reason code, e.g. dnc_national")] = None,
                  state: Annotated[str | None, Query(max_length=2, description="two-letter state code")] = None,
                  since: Annotated[datetime | None, Query(description="decided at or after (ISO 8601 with zone)")] = None,
                  until: Annotated[datetime | None, Query(description="decided before (ISO 8601 with zone)")] = None,
                  ) -> ReportFilter:
    try:
        return ReportFilter(campaign_id=campaign_id, reason=reason, state=state.upper() if state else None,
                            verdicts=tuple(dict.fromkeys(verdict)) or REPORT_VERDICTS, since=since, until=until,
                            owner_id=owner_scope(user))
    except ReportFilterError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None


FilterDep = Annotated[ReportFilter, Depends(report_filter)]


class ReportRowOut(BaseModel):
    decision_id: str
    decided_at: str
    verdict: str
    phone: str
    states: list[str]
    campaign_id: int | None
    campaign: str | None
    attempt_id: int | None
    rules_version: str
    reasons: list[dict[str, Any]]
    next_allowed_at: str | None


class SummaryOut(BaseModel):
    total: int
    by_verdict: dict[str, int]
    by_reason: dict[str, dict[str, int]]
    by_state: dict[str, int]
    by_campaign: dict[str, int]


class DayCountOut(BaseModel):
    day: str
    reason: str
    count: int


@router.get("/reports/decisions", summary="Blocked and deferred decisions (by default), newest first, filtered")
def report_rows(filters: FilterDep, session: SessionDep,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[ReportRowOut]:
    return [ReportRowOut(**row.to_dict()) for row in report_page(session, filters, limit=limit, offset=offset)]


@router.get("/reports/decisions.csv", summary="The same rows as CSV, safe to open in a spreadsheet",
            response_class=StreamingResponse, responses={200: {"content": {"text/csv": {}}}})
def report_csv(filters: FilterDep, engine: EngineDep) -> StreamingResponse:
    return StreamingResponse(_stream_csv(engine, filters), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="decisions-report.csv"'})


def _stream_csv(engine: Engine, filters: ReportFilter) -> Iterator[str]:
    # The session lives as long as the streamed body, not the request handler.
    with Session(engine) as session:
        yield from iter_report_csv(session, filters)


@router.get("/reports/summary", summary="Counts by verdict, reason, state and campaign")
def report_summary(filters: FilterDep, session: SessionDep) -> SummaryOut:
    return SummaryOut(**summarize(session, filters).to_dict())


@router.get("/reports/by-reason-over-time", summary="Decisions per UTC day and reason, oldest first (the chart)")
def report_over_time(filters: FilterDep, session: SessionDep) -> list[DayCountOut]:
    return [DayCountOut(**point) for point in reasons_over_time(session, filters)]
