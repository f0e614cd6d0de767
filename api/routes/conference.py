"""Twilio webhooks of warm transfers: POST /v1/conference/{transfer_id}/{leaf}, all signed.

TwiML (what a call hears next):
- `wait`: the caller's hold (identification first, then hold audio; past the wait time the
  caller is redirected to `no-agent`);
- `agent`: the agent leg: spoken summary, then the conference;
- `no-agent`: told nobody is free, callback offered (already scheduled);
- `callback-reply`: the caller's answer to that offer (9 or "stop" opts out);
- `caller-done`: the caller's <Dial> ended: a goodbye.

JSON (Twilio ignores the body): `events` (the conference's statusCallback) and `agent-status`
(the agent leg's status callback).

Signatures and configuration are checked exactly as for the other Twilio webhooks (the helpers
of `api.routes.webhooks`). A transfer that is unknown or already over never fails: events answer
`{"action": "ignored"}` with 200, TwiML requests answer a spoken goodbye and a hang-up, so a
late webhook is not retried for nothing and a caller never hears silence.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.routes.webhooks import ConfigDep, NowDep, WebhookConfig, _multi_params, require_signature
from outbound import transfers
from outbound.db import get_engine, session_scope

router = APIRouter(prefix=transfers.ROUTE_PREFIX, tags=["twilio webhooks"])

XML = "application/xml"


async def _signed_params(request: Request, config: WebhookConfig) -> dict[str, Any]:
    form = await request.form()
    require_signature(request, config, _multi_params(form))
    return {**request.query_params, **form}


def _in_session(work: Callable[..., Any], *args: Any) -> Any:
    with session_scope(get_engine()) as session:
        return work(session, *args)


def _twiml_route(leaf: str, summary: str) -> None:
    async def route(transfer_id: int, request: Request, config: ConfigDep, now: NowDep) -> Response:
        params = await _signed_params(request, config)

        def work(session, transfer_id, params, now):
            return transfers.twiml_for(session, transfer_id, leaf, params, at=now, public_url=config.public_url)

        twiml = await run_in_threadpool(_in_session, work, transfer_id, params, now)
        return Response(twiml, media_type=XML)

    route.__name__ = f"conference_{leaf.replace('-', '_')}"
    router.add_api_route(f"/{{transfer_id}}/{leaf}", route, methods=["POST"], name=route.__name__,
                         summary=summary, responses={403: {"description": "missing or wrong X-Twilio-Signature"}})


for _leaf, _summary in (
        ("wait", "Hold audio of a caller waiting for an agent (signed)"),
        ("agent", "The agent leg: a spoken summary, then the conference (signed)"),
        ("no-agent", "No agent joined: the caller is told and offered the callback (signed)"),
        ("callback-reply", "The caller's answer to the callback offer (signed)"),
        ("caller-done", "The caller left the conference: goodbye (signed)")):
    _twiml_route(_leaf, _summary)


@router.post("/console", name="conference_console",
             summary="The TwiML App's voice URL for console agents (Twilio Client): joins the offered "
                     "transfer's conference, `transfer` parameter from device.connect (signed)",
             responses={403: {"description": "missing or wrong X-Twilio-Signature"}})
async def conference_console(request: Request, config: ConfigDep, now: NowDep) -> Response:
    params = await _signed_params(request, config)
    transfer = str(params.get("transfer", ""))
    if not transfer.isdigit():
        # A console leg that names no transfer: said, then ended (never silence).
        return Response(transfers.ended_twiml(None), media_type=XML)

    def work(session, transfer_id, params, now):
        return transfers.twiml_for(session, transfer_id, "agent", params, at=now, public_url=config.public_url)

    return Response(await run_in_threadpool(_in_session, work, int(transfer), params, now), media_type=XML)


def _event_route(leaf: str, handle: Callable[..., transfers.EventResult], summary: str) -> None:
    async def route(transfer_id: int, request: Request, config: ConfigDep, now: NowDep) -> JSONResponse:
        params = await _signed_params(request, config)

        def work(session, transfer_id, params, now):
            return handle(session, transfer_id, params, at=now, public_url=config.public_url)

        result = await run_in_threadpool(_in_session, work, transfer_id, params, now)
        return JSONResponse(result.as_dict())

    route.__name__ = f"conference_{leaf.replace('-', '_')}"
    router.add_api_route(f"/{{transfer_id}}/{leaf}", route, methods=["POST"], name=route.__name__,
                         summary=summary, responses={403: {"description": "missing or wrong X-Twilio-Signature"}})


def _events(session, transfer_id, params, *, at: datetime, public_url: str):
    return transfers.handle_conference_event(session, transfer_id, params, at=at)


def _agent_status(session, transfer_id, params, *, at: datetime, public_url: str):
    return transfers.handle_agent_call_status(session, transfer_id, params, at=at, public_url=public_url)


_event_route("events", _events, "Conference status callback: joins and leaves (signed)")
_event_route("agent-status", _agent_status, "Status callback of the agent leg (signed)")
