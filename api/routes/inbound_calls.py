"""Calls to our callback number (signed Twilio webhooks): who we are, and 9 to opt out.

- POST /v1/twilio/inbound-call: the Voice URL of our numbers; answers a one-key menu;
- POST /v1/twilio/inbound-call/choice: the key pressed (or none). 9 stores the opt-out from
  every call and text, committed, and only then says so. See `outbound.inbound_calls`. The 9 is
  first put in the opt-out journal (`outbound.opt_out_journal`): a database that does not answer
  within OPT_OUT_DB_WAIT_SECONDS still hears the caller thanked, and the worker stores it later.
"""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from api.routes.voice import RESPONSES, _journaled, _signed_params, under_journal_lock
from api.routes.webhooks import OPT_OUT_DB_WAIT_SECONDS, ConfigDep, NowDep
from outbound import journaled_opt_outs
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
    record = journaled_opt_outs.inbound_call_record(params, now)
    if record is not None and await _journaled(record):
        try:
            opted_out, seller = await asyncio.wait_for(
                asyncio.shield(run_in_threadpool(under_journal_lock, record, work)), OPT_OUT_DB_WAIT_SECONDS)
        except (TimeoutError, SQLAlchemyError, OSError):
            # The 9 is in the journal; the worker stores it once the database answers.
            return _xml(twiml.inbound_choice_twiml(True, None))
        return _xml(twiml.inbound_choice_twiml(opted_out, seller))
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
