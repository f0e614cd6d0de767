"""Twilio webhooks: POST /v1/twilio/{call-status, amd, sms-status, sms-inbound, gather}.

Each request, in this order, and nothing is written before the last step:

1. configuration: without OUTBOUND_PUBLIC_URL or OUTBOUND_TWILIO_AUTH_TOKEN the webhooks answer
   503 naming the variable (the rest of the app still serves);
2. signature: `X-Twilio-Signature` is checked against the URL Twilio was told to call, the
   configured public URL + the path + the query, never `request.url` (behind a proxy the app
   sees another scheme, host and port); unsigned or wrong → 403 "invalid signature". The body
   is read at most `api.upload_limit.WEBHOOK_MAX_BYTES` (64 KB) before that check: a longer one
   is 413 before a byte more is read;
3. `outbound.carrier_events.handle_webhook`, the one code path the simulator uses too: unknown
   CallSid/MessageSid → 404, a missing or impossible parameter → 422. The event goes through
   `api.event_writer`, one thread per process that commits the status events queued meanwhile
   together (one disk flush for the lot); the request is answered once its event is stored.

An inbound text that is an opt-out does not wait in that queue: it is first appended to the
opt-out journal (`outbound.opt_out_journal`, fsync'd in the data directory), then given
OPT_OUT_DB_WAIT_SECONDS to be stored, and answered 200 either way; a database that is locked,
slow or gone cannot lose it (the worker and this process store it once the database answers).

Inbound texts and gathers answer an empty TwiML `<Response/>`: an opt-out's confirmation (and a
HELP or START reply) is sent through the adapter, so it is sent once, recorded with its own
MessageSid and audited (see `outbound.inbound_sms`). Status callbacks answer the result as JSON,
which Twilio ignores and people debugging read.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Annotated, Any, NamedTuple
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import FormData

from api.event_writer import EventWriter
from outbound.carrier_events import KINDS, InvalidEvent, PendingEvent, UnknownCall, WebhookResult
from outbound import journaled_opt_outs, opt_out_journal
from outbound.db import get_engine
from outbound.opt_out_journal import JournaledOptOut
from outbound.settings import Settings, get_settings
from telephony.adapter import Adapter
from telephony.signatures import validate_twilio_request

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/twilio", tags=["twilio webhooks"])

SIGNATURE_HEADER = "X-Twilio-Signature"
INVALID_SIGNATURE = "invalid signature"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
TWIML_KINDS = frozenset({"sms-inbound", "gather"})
# Kinds whose handling may act on the call or reply through the carrier.
ADAPTER_KINDS = frozenset({"amd", "sms-inbound", "gather"})
FORM_TYPE = "application/x-www-form-urlencoded"


class WebhookConfig(NamedTuple):
    public_url: str
    auth_token: str


async def get_webhook_config() -> WebhookConfig:
    settings = get_settings()
    missing = [name for name, value in (("OUTBOUND_PUBLIC_URL", settings.public_url),
                                        ("OUTBOUND_TWILIO_AUTH_TOKEN", settings.twilio_auth_token))
               if not value]
    if missing:
        raise HTTPException(503, detail=f"Twilio webhooks are not configured: set {' and '.join(missing)} "
                                        "(the public URL Twilio calls and the auth token it signs with)")
    return WebhookConfig(settings.public_url, settings.twilio_auth_token)


async def get_reply_adapter() -> Adapter | None:
    """The adapter replies to inbound texts go out through: Twilio's when configured. With the
    simulator, texts reach the engine through the simulator itself, not HTTP; a text that does
    arrive here is handled (an opt-out is stored) and its reply recorded as not sent."""
    settings = get_settings()
    return _twilio_adapter(settings) if settings.telephony == "twilio" else None


@lru_cache(maxsize=4)
def _twilio_adapter(settings: Settings) -> Adapter | None:
    from telephony.factory import ConfigError, adapter_from_settings
    try:
        return adapter_from_settings(settings)
    except ConfigError as error:
        # The opt-out must still be stored; the reply is recorded as not sent, with this reason.
        log.error("inbound SMS replies disabled: %s", error)
        return None


async def get_now() -> datetime:
    return datetime.now(UTC)


# The dependencies are `async def` though they do not await: FastAPI runs a plain `def`
# dependency on the thread pool, a hop per dependency per request that costs more than the work.
ConfigDep = Annotated[WebhookConfig, Depends(get_webhook_config)]
AdapterDep = Annotated[Adapter | None, Depends(get_reply_adapter)]
NowDep = Annotated[datetime, Depends(get_now)]


def require_signature(request: Request, config: WebhookConfig, form: Mapping[str, list[str]]) -> None:
    """403 unless `X-Twilio-Signature` signs this request's path, query and every form value
    under the configured public URL (never `request.url`: behind a proxy it differs).

    The answer says no more than "invalid signature": whoever is refused is not Twilio, and the
    URL the engine signs against is not theirs to learn."""
    if not validate_twilio_request(config.auth_token, config.public_url, request.url.path, request.url.query,
                                   form, request.headers.get(SIGNATURE_HEADER)):
        raise HTTPException(403, detail=INVALID_SIGNATURE)


def _multi_params(form: FormData) -> dict[str, list[str]]:
    # Every value of a repeated key is signed, so every value is checked.
    return {name: [str(value) for value in form.getlist(name)] for name in form.keys()}


async def _handle_off_loop(kind: str, params: dict[str, str], at: datetime,
                           adapter: Adapter | None) -> WebhookResult:
    future = _writer().submit(PendingEvent(kind, params, at), adapter)
    return await asyncio.wrap_future(future)


# --- opt-outs: on disk before the answer, whatever the database is doing -----------------------

# How long an opt-out's webhook waits for the database before answering anyway (the opt-out is
# in the journal by then): well inside Twilio's 15 s webhook timeout.
OPT_OUT_DB_WAIT_SECONDS = 2.0
_opt_out_writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="opt-out")


async def journal_and_store(record: JournaledOptOut | None, adapter: Adapter | None, now: datetime) -> bool:
    """For an inbound opt-out: append it to the journal (fsync'd), then give the database
    OPT_OUT_DB_WAIT_SECONDS to store it. True when the opt-out is durable, stored or not, and
    the webhook may answer 2xx; False when this is no opt-out, or the journal could not be
    written (the normal path then runs, and answers 500 if the database fails too)."""
    if record is None:
        return False
    data_dir = get_settings().data_dir
    try:
        await asyncio.to_thread(opt_out_journal.append, data_dir, record)
    except opt_out_journal.JournalError as error:
        log.error("opt-out %s NOT journaled, trying the database alone: %s", record.key, error)
        return False
    # The engine is asked for in the thread: even making it touches the disk (SQLite's directory).
    future = _opt_out_writer.submit(lambda: journaled_opt_outs.store_now(data_dir, get_engine(), record,
                                                                         adapter=adapter, clock=lambda: now))
    future.add_done_callback(partial(_log_late_failure, record.key))
    try:
        await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), OPT_OUT_DB_WAIT_SECONDS)
    except TimeoutError:
        log.warning("opt-out %s journaled; the database did not answer within %.1f s: applied later",
                    record.key, OPT_OUT_DB_WAIT_SECONDS)
    except Exception:                  # logged by the callback; the journal has it
        pass
    return True


OPT_OUT_JOURNAL_SECONDS = 5.0


async def apply_opt_out_journal_forever() -> None:
    """The API process's share of applying the journal (the worker has its own job)."""
    while True:
        try:
            await asyncio.to_thread(apply_opt_out_journal)
        except Exception:               # the next run tries again; the records stay pending
            log.exception("applying the opt-out journal failed")
        await asyncio.sleep(OPT_OUT_JOURNAL_SECONDS)


def apply_opt_out_journal() -> int:
    """Store the pending journaled opt-outs now; confirmations go out through Twilio when configured."""
    settings = get_settings()
    adapter = _twilio_adapter(settings) if settings.telephony == "twilio" else None
    return journaled_opt_outs.apply_journal(settings.data_dir, get_engine(), adapter=adapter)


def _log_late_failure(key: str, future) -> None:
    error = future.exception()
    if error is not None:
        log.warning("opt-out %s journaled, not yet in the database (applied later): %s", key, error)


def _writer() -> EventWriter:
    global _event_writer
    if _event_writer is None:
        _event_writer = EventWriter(get_engine)
    return _event_writer


_event_writer: EventWriter | None = None


async def _act_on_machine_answer(result: WebhookResult, params: dict, at: datetime, adapter: Adapter | None,
                                 public_url: str) -> None:
    # After the AMD event is stored: the campaign's machine policy (leave the voicemail message
    # or hang up) acts on the live call. Imported here: api.routes.voice imports this module.
    from api.routes.voice import act_on_machine_answer

    await act_on_machine_answer(result, params, at, adapter, public_url)


def _answer(kind: str, result: WebhookResult) -> Response:
    if kind in TWIML_KINDS:
        return Response(EMPTY_TWIML, media_type="application/xml")
    return JSONResponse({**result.as_dict(), "duplicate": result.duplicate})


async def _injected(request: Request, dependency: Callable[[], Awaitable[Any]]) -> Any:
    # These receivers are plain Starlette endpoints (see `_receiver`), but FastAPI's
    # dependency_overrides still apply, so a test injects its clock or carrier as everywhere else.
    call = request.app.dependency_overrides.get(dependency, dependency)
    value = call()
    return await value if inspect.isawaitable(value) else value


async def _signed_form(request: Request, config: WebhookConfig) -> list[tuple[str, str]]:
    """The form's (name, value) pairs, in order, once the signature over them has been checked."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith(FORM_TYPE):
        raise HTTPException(415, detail=f"Twilio webhooks are form-encoded: expected Content-Type {FORM_TYPE}, "
                                        f"got {content_type or 'none'}")
    try:
        pairs = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise HTTPException(400, detail="the form body is not UTF-8") from None
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        form.setdefault(name, []).append(value)       # every value of a repeated key is signed
    require_signature(request, config, form)
    return pairs


def _receiver(kind: str):
    async def receive(request: Request) -> Response:
        config = await _injected(request, get_webhook_config)
        pairs = await _signed_form(request, config)
        now = await _injected(request, get_now)
        adapter = await _injected(request, get_reply_adapter) if kind in ADAPTER_KINDS else None
        # Parameters of the callback URL's query (e.g. a gather's turn) are signed too.
        params: dict[str, Any] = {**request.query_params, **dict(pairs)}
        if kind == "sms-inbound" and await journal_and_store(journaled_opt_outs.sms_record(params, now),
                                                             adapter, now):
            return Response(EMPTY_TWIML, media_type="application/xml")
        try:
            result = await _handle_off_loop(kind, params, now, adapter)
        except UnknownCall as error:
            raise HTTPException(404, detail=str(error)) from None
        except InvalidEvent as error:
            raise HTTPException(422, detail=f"{kind}: {error}") from None
        if kind == "amd":
            await _act_on_machine_answer(result, params, now, adapter, config.public_url)
        return _answer(kind, result)

    receive.__name__ = f"twilio_{kind.replace('-', '_')}"
    return receive


# Plain Starlette routes, not FastAPI's: the busiest endpoints of the app (every call sends four
# or five status callbacks) skip dependency solving and the form parser, which halves their cost
# on the event loop (bench/bench_webhooks.py). They are therefore not in the OpenAPI schema;
# the README lists them, and Twilio is given their URLs by the adapter, not by a client.
for _kind in KINDS:
    # (APIRouter.add_route does not apply the router's prefix: the path is given whole.)
    router.add_route(f"{router.prefix}/{_kind}", _receiver(_kind), methods=["POST"], name=f"twilio_{_kind}",
                     include_in_schema=False)


# The answer URL (/v1/twilio/voice/{attempt_id}) and the conversation's replies live in
# api/routes/voice.py, which reuses this module's configuration and signature checks.
