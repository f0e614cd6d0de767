"""Twilio voice webhooks: what an answered call hears, and each reply (signed).

- POST /v1/twilio/voice/{attempt_id}: the answer URL the dispatcher gives Twilio (the preamble
  and the script's first step);
- POST /v1/twilio/gather/{attempt_id}?turn=&node=&tries=: a reply (speech and/or digits, or
  silence) heard at a node; answers the next step;
- POST /v1/twilio/voicemail/{attempt_id}: the message after an answering machine's beep.

Signatures are checked exactly as the other receivers do (`api.routes.webhooks`: configured
public URL, 403 when missing or wrong; 503 when not configured), and the same single-writer
handling applies on SQLite. The work is `outbound.conversation`, the code path the simulator
takes too; the TwiML is `telephony.twiml`.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import partial
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from sqlmodel import Session
from twilio.twiml.voice_response import VoiceResponse

from api.routes.webhooks import (
    OPT_OUT_DB_WAIT_SECONDS, AdapterDep, ConfigDep, NowDep, _multi_params, require_signature,
)
from outbound import journaled_opt_outs, opt_out_journal
from outbound.carrier_events import InvalidEvent, UnknownCall
from outbound.conversation import UnknownAttempt, answer_call, on_gather
from outbound.db import get_engine, session_scope
from outbound.opt_out_journal import JournaledOptOut
from outbound.scripts.model import Gather
from outbound.settings import get_settings
from outbound.voicemail import voicemail_for
from telephony import twiml

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/twilio", tags=["twilio voice"])

# Said when a key 9 or a spoken stop is journaled but the database cannot be reached in time:
# the campaign's seller is in the database, so "us".
OPT_OUT_GOODBYE = "You will not get more calls from us. Thank you, goodbye."

# SQLite has one writer: conversation turns are written by one thread per process, in arrival
# order, rather than queueing in SQLite's busy handler. PostgreSQL takes them in parallel.
_sqlite_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voice-sqlite")

RESPONSES = {403: {"description": "missing or wrong X-Twilio-Signature"},
             404: {"description": "no such attempt, or a CallSid that is not its call"},
             422: {"description": "a parameter is missing or impossible"},
             503: {"description": "OUTBOUND_PUBLIC_URL or OUTBOUND_TWILIO_AUTH_TOKEN not set"}}


async def _signed_params(request: Request, config) -> dict[str, str]:
    form = await request.form()
    require_signature(request, config, _multi_params(form))
    return {name: str(value) for name, value in form.items()}


async def _in_session(work) -> Any:
    def run() -> str:
        with session_scope(get_engine()) as session:
            return work(session)
    try:
        if get_engine().dialect.name == "sqlite":
            return await asyncio.get_running_loop().run_in_executor(_sqlite_writer, run)
        return await run_in_threadpool(run)
    except (UnknownAttempt, UnknownCall, LookupError) as error:
        raise HTTPException(404, detail=str(error)) from None
    except InvalidEvent as error:
        raise HTTPException(422, detail=str(error)) from None


def _xml(text: str) -> Response:
    return Response(text, media_type="application/xml")


def _renderer(public_url: str, adapter):
    return partial(twiml.render, public_url=public_url, adapter=adapter)


@router.post("/voice/{attempt_id}", name="twilio_voice", responses=RESPONSES,
             summary="TwiML for an answered call: preamble, then the campaign's script (signed)")
async def twilio_voice(attempt_id: int, request: Request, config: ConfigDep, adapter: AdapterDep,
                       now: NowDep) -> Response:
    await _signed_params(request, config)
    render = _renderer(config.public_url, adapter)
    return _xml(await _in_session(lambda session: answer_call(session, attempt_id, now, render=render)))


@router.post("/gather/{attempt_id}", name="twilio_gather_reply", responses=RESPONSES,
             summary="A reply heard on a call (speech, digits or silence): the next step as TwiML (signed)")
async def twilio_gather_reply(attempt_id: int, request: Request, config: ConfigDep, adapter: AdapterDep,
                              now: NowDep, turn: int, node: str, tries: int = 0) -> Response:
    params = await _signed_params(request, config)
    if turn < 1 or tries not in (0, 1):
        raise HTTPException(422, detail=f"turn must be >= 1 and tries 0 or 1, got turn={turn} tries={tries}")
    render = _renderer(config.public_url, adapter)

    def work(session: Session) -> str:
        return gather_reply(session, attempt_id, params, now, turn=turn, position=Gather(node=node, tries=tries),
                            render=render, adapter=adapter)

    record = journaled_opt_outs.call_record(attempt_id, params, now, turn)
    if record is None or not await _journaled(record):
        return _xml(await _in_session(work))
    return await _opt_out_reply(record, work)


async def _journaled(record: JournaledOptOut) -> bool:
    """Key 9 or a spoken stop: on disk (fsync'd) before anything else. False when the journal
    cannot be written: the normal path alone then runs, as it did before the journal."""
    try:
        await asyncio.to_thread(opt_out_journal.append, get_settings().data_dir, record)
    except opt_out_journal.JournalError as error:
        log.error("opt-out %s NOT journaled, trying the database alone: %s", record.key, error)
        return False
    return True


async def _opt_out_reply(record: JournaledOptOut, work) -> Response:
    """The conversation's answer to a journaled opt-out if the database gives it within
    OPT_OUT_DB_WAIT_SECONDS; else a polite goodbye (the journal has the opt-out, and the worker
    stores it once the database is free)."""

    def stored_and_marked(session: Session) -> str:
        return under_journal_lock(record, lambda: work(session))

    try:
        return _xml(await asyncio.wait_for(asyncio.shield(_in_session(stored_and_marked)), OPT_OUT_DB_WAIT_SECONDS))
    except (TimeoutError, SQLAlchemyError, OSError) as error:
        log.warning("opt-out %s journaled; the database did not store it now (%s): applied later",
                    record.key, error or "timeout")
        return _xml(opt_out_goodbye_twiml())


def under_journal_lock(record: JournaledOptOut, work):
    """Run the normal path for a journaled opt-out under the journal's lock, as every application
    is (no other process stores it meanwhile), then mark it applied."""
    data_dir = get_settings().data_dir
    with opt_out_journal.exclusive(data_dir):
        answer = work()
        if record.key not in opt_out_journal.applied_keys(data_dir):
            opt_out_journal.mark_applied(data_dir, record.key, "stored by the webhook", datetime.now(timezone.utc))
        return answer


def opt_out_goodbye_twiml() -> str:
    response = VoiceResponse()
    response.say(OPT_OUT_GOODBYE)
    response.hangup()
    return str(response)


def gather_reply(session: Session, attempt_id: int, params: dict[str, str], at: datetime, **kwargs) -> str:
    return on_gather(session, attempt_id, params, at, **kwargs)


@router.post("/voicemail/{attempt_id}", name="twilio_voicemail", responses=RESPONSES,
             summary="The message left after an answering machine's beep, then hang up (signed)")
async def twilio_voicemail(attempt_id: int, request: Request, config: ConfigDep, now: NowDep) -> Response:
    await _signed_params(request, config)

    def work(session: Session) -> str:
        message = voicemail_for(session, attempt_id, now)
        return twiml.voicemail_twiml(message) if message else twiml.step_twiml_hangup()
    return _xml(await _in_session(work))


async def act_on_machine_answer(result, params: dict, at: datetime, adapter, public_url: str) -> None:
    """For the AMD receiver (api/routes/webhooks.py), after the event was stored: on a new
    `machine_end_*` verdict, the campaign's machine policy acts on the live call (redirect to the
    voicemail message, or hang up). The simulator does the same in `telephony.call_requests`."""
    from outbound.voicemail import MESSAGE_VERDICTS, on_machine_answer

    answered_by = str(params.get("AnsweredBy", ""))
    if result.duplicate or not result.attempt_id or answered_by not in MESSAGE_VERDICTS:
        return
    await _in_session(lambda session: on_machine_answer(
        session, result.attempt_id, answered_by, at, adapter=adapter,
        voicemail_url=twiml.voicemail_url(public_url, result.attempt_id)))
