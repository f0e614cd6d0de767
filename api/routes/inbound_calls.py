"""Calls to our callback number (signed Twilio webhooks): who we are, and 9 to opt out.

- POST /v1/twilio/inbound-call: the Voice URL of our numbers; answers a one-key menu;
- POST /v1/twilio/inbound-call/choice: the key pressed (or none). 9 stores the opt-out from
  every call and text, committed, and only then says so. See `outbound.inbound_calls`.
"""
from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.routes.voice import RESPONSES, _signed_params
from api.routes.webhooks import ConfigDep, NowDep
from outbound.db import get_engine, session_scope
from outbound.inbound_calls import OPT_OUT_DIGIT, LedgerError, opt_out_by_keypress, seller_for_number
from telephony import twiml

router = APIRouter(prefix="/v1/twilio", tags=["twilio voice"])


def _xml(text: str) -> Response:
    return Response(text, media_type="application/xml")


@router.post("/inbound-call", name="twilio_inbound_call", responses=RESPONSES,
             summary="A call to our number: who we are, press 9 to stop calls and texts (signed)")
async def inbound_call(request: Request, config: ConfigDep) -> Response:
    params = await _signed_params(request, config)
    seller = await run_in_threadpool(_seller, params.get("To", ""))
    return _xml(twiml.inbound_menu_twiml(seller, config.public_url))


@router.post("/inbound-call/choice", name="twilio_inbound_call_choice", responses=RESPONSES,
             summary="The key a caller to our number pressed: 9 opts out of every call and text (signed)")
async def inbound_call_choice(request: Request, config: ConfigDep, now: NowDep) -> Response:
    params = await _signed_params(request, config)
    caller, pressed = params.get("From", ""), params.get("Digits", "")

    def work() -> tuple[bool, str | None]:
        with session_scope(get_engine()) as session:
            seller = seller_for_number(session, params.get("To", ""))
            if pressed != OPT_OUT_DIGIT:
                return False, seller
            opt_out_by_keypress(session, caller, now, call_sid=params.get("CallSid", ""), seller=seller)
            return True, seller
    try:
        opted_out, seller = await run_in_threadpool(work)
    except LedgerError:
        # A withheld or unreadable number: nothing to store against. The caller is told, never
        # left in silence.
        return _xml(twiml.inbound_unidentified_twiml())
    return _xml(twiml.inbound_choice_twiml(opted_out, seller))


def _seller(called: str) -> str | None:
    with session_scope(get_engine()) as session:
        return seller_for_number(session, called)
