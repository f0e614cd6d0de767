"""Stored gate decisions for compliance: list a phone's decisions, read one with its inputs, and
replay it (`outbound gate replay`): re-derive it from the stored scenario and rule pack.

Replay stores nothing, so it is not audited; it answers whether today's evaluation is identical.
"""
from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel
from sqlmodel import Session

from api.auth import require_roles
from api.database import SessionDep
from api.phone_param import e164_param
from api.routes.reports import ReportRowOut
from outbound.audit import iso_utc
from outbound.decisions import load_decision
from outbound.replay import ReplayResult, replay_row
from outbound.reports import ALL_VERDICTS, ReportFilter, report_page

router = APIRouter(prefix="/v1/decisions", tags=["decisions"],
                   dependencies=[Depends(require_roles("compliance"))])
DecisionId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="the decision's uuid4 hex id")]
NOT_FOUND = {404: {"description": "no stored decision with that id"}}


class DecisionOut(BaseModel):
    id: str
    decided_at: str
    verdict: str
    phone: str
    attempt_id: int | None
    rules_version: str
    scenario: dict[str, Any]
    decision: dict[str, Any]


@router.get("", summary="Every stored decision about a phone, newest first")
def list_decisions(session: SessionDep, phone: Annotated[str, Query(max_length=40)],
                   verdict: Annotated[Literal["allow", "defer", "block"] | None, Query()] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[ReportRowOut]:
    filters = ReportFilter(phone=e164_param(phone), verdicts=(verdict,) if verdict else ALL_VERDICTS)
    return [ReportRowOut(**row.to_dict()) for row in report_page(session, filters, limit=limit, offset=offset)]


def _load(session: Session, decision_id: str):
    found = load_decision(session, decision_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no stored decision with id {decision_id!r}")
    return found


@router.get("/{decision_id}", responses=NOT_FOUND, summary="One decision with the scenario it was derived from")
def get_decision(decision_id: DecisionId, session: SessionDep) -> DecisionOut:
    row, _pack = _load(session, decision_id)
    return DecisionOut(id=row.id, decided_at=iso_utc(row.decided_at), verdict=row.verdict, phone=row.phone,
                       attempt_id=row.attempt_id, rules_version=row.rules_version,
                       scenario=json.loads(row.scenario), decision=json.loads(row.decision))


@router.post("/{decision_id}/replay", responses=NOT_FOUND,
             summary="Re-derive the decision from its stored inputs and rule pack; stores nothing")
def replay(decision_id: DecisionId, session: SessionDep) -> ReplayResult:
    row, pack_json = _load(session, decision_id)
    return replay_row(row.id, iso_utc(row.decided_at), row.scenario, row.decision, pack_json,
                      location=row.location)
