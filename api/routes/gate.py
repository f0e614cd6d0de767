"""POST /v1/gate/check: the gate contract over HTTP; stores nothing. Managers and compliance."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from api.auth import CampaignReader
from consent.check import check_one
from consent.rules import load_pack
from consent.scenario import ScenarioError, ScenarioIn

router = APIRouter(tags=["gate"])


@router.post(
    "/v1/gate/check",
    summary="Decide one scenario (allow, defer or block) without storing anything",
    responses={422: {"description": "Invalid scenario; `error` names the field and the problem"}},
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": ScenarioIn.model_json_schema(
        ref_template="#/components/schemas/{model}")}}, "required": True}},
)
def gate_check(user: CampaignReader, scenario: Any = Body(...)) -> Any:
    try:
        return check_one(scenario, load_pack())
    except ScenarioError as error:
        return JSONResponse(status_code=422, content={"error": str(error)})
