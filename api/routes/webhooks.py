"""Twilio webhooks: POST /v1/twilio/{call-status, amd, sms-status, sms-inbound, gather}.

Each request, in this order, and nothing is written before the last step:

1. configuration: without OUTBOUND_PUBLIC_URL or OUTBOUND_TWILIO_AUTH_TOKEN the webhooks answer
   503 naming the variable (the rest of the app still serves);
2. signature: `X-Twilio-Signature` is checked against the URL Twilio was told to call, the
   configured public URL + the path + the query, never `request.url` (behind a proxy the app
   sees another scheme, host and port); unsigned or wrong → 403;
3. `outbound.carrier_events.handle_webhook`, the one code path the simulator uses too: unknown
   CallSid/MessageSid → 404, a missing or impossible parameter → 422.

Inbound texts and gathers answer an empty TwiML `<Response/>`: an opt-out's confirmation (and a
HELP or START reply) is sent through the adapter, so it is sent once, recorded with its own
MessageSid and audited (see `outbound.inbound_sms`). Status callbacks answer the result as JSON,
which Twilio ignores and people debugging read.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, NamedTuple

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from outbound.carrier_events import KINDS, InvalidEvent, UnknownCall, WebhookResult, handle_webhook
from outbound.db import get_engine, session_scope
from outbound.settings import Settings, get_settings
from telephony.adapter import Adapter
from telephony.signatures import validate_twilio_request

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/twilio", tags=["twilio webhooks"])

SIGNATURE_HEADER = "X-Twilio-Signature"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
TWIML_KINDS = frozenset({"sms-inbound", "gather"})


class WebhookConfig(NamedTuple):
    public_url: str
    auth_token: str


def get_webhook_config() -> WebhookConfig:
    settings = get_settings()
    missing = [name for name, value in (("OUTBOUND_PUBLIC_URL", settings.public_url),
                                        ("OUTBOUND_TWILIO_AUTH_TOKEN", settings.twilio_auth_token))
               if not value]
    if missing:
        raise HTTPException(503, detail=f"Twilio webhooks are not configured: set {' and '.join(missing)} "
                                        "(the public URL Twilio calls and the auth token it signs with)")
    return WebhookConfig(settings.public_url, settings.twilio_auth_token)


def get_reply_adapter() -> Adapter | None:
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


def get_now() -> datetime:
    return datetime.now(UTC)


ConfigDep = Annotated[WebhookConfig, Depends(get_webhook_config)]
AdapterDep = Annotated[Adapter | None, Depends(get_reply_adapter)]
NowDep = Annotated[datetime, Depends(get_now)]


def _multi_params(form: FormData) -> dict[str, list[str]]:
    # Every value of a repeated key is signed, so every value is checked.
    return {name: [str(value) for value in form.getlist(name)] for name in form.keys()}


def _handle(kind: str, params: dict[str, str], at: datetime, adapter: Adapter | None) -> WebhookResult:
    with session_scope(get_engine()) as session:
        return handle_webhook(session, kind, params, at, adapter=adapter)


# SQLite has one writer. Left to SQLite, concurrent writers wait in its busy handler, which
# sleeps between tries (up to 100 ms each): under a burst of callbacks latency explodes. One
# thread per process handles SQLite events in arrival order instead. PostgreSQL takes them in
# parallel on the default thread pool; its row locks order the events of one call.
_sqlite_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook-sqlite")


async def _handle_off_loop(kind: str, params: dict[str, str], at: datetime,
                           adapter: Adapter | None) -> WebhookResult:
    if get_engine().dialect.name == "sqlite":
        return await asyncio.get_running_loop().run_in_executor(
            _sqlite_writer, _handle, kind, params, at, adapter)
    return await run_in_threadpool(_handle, kind, params, at, adapter)


def _answer(kind: str, result: WebhookResult) -> Response:
    if kind in TWIML_KINDS:
        return Response(EMPTY_TWIML, media_type="application/xml")
    return JSONResponse({**result.as_dict(), "duplicate": result.duplicate})


def _receiver(kind: str):
    async def receive(request: Request, config: ConfigDep, adapter: AdapterDep, now: NowDep) -> Response:
        form = await request.form()
        signed = validate_twilio_request(config.auth_token, config.public_url, request.url.path,
                                         request.url.query, _multi_params(form),
                                         request.headers.get(SIGNATURE_HEADER))
        if not signed:
            raise HTTPException(403, detail=f"{SIGNATURE_HEADER} is missing or does not match this request "
                                            f"signed for {config.public_url.rstrip('/')}{request.url.path}")
        # Parameters of the callback URL's query (e.g. a gather's turn) are signed too.
        params: dict[str, Any] = {**request.query_params, **form}
        try:
            result = await _handle_off_loop(kind, params, now, adapter)
        except UnknownCall as error:
            raise HTTPException(404, detail=str(error)) from None
        except InvalidEvent as error:
            raise HTTPException(422, detail=f"{kind}: {error}") from None
        return _answer(kind, result)

    receive.__name__ = f"twilio_{kind.replace('-', '_')}"
    return receive


for _kind in KINDS:
    router.add_api_route(
        f"/{_kind}", _receiver(_kind), methods=["POST"], name=f"twilio_{_kind}",
        summary=f"Twilio {_kind} webhook (form-encoded, signed)",
        responses={403: {"description": "missing or wrong X-Twilio-Signature"},
                   404: {"description": "unknown CallSid or MessageSid"},
                   422: {"description": "a parameter is missing or impossible"},
                   503: {"description": "OUTBOUND_PUBLIC_URL or OUTBOUND_TWILIO_AUTH_TOKEN not set"}})


# --- what a call says ------------------------------------------------------------------------

@router.post("/voice/{attempt_id}", name="twilio_voice",
             summary="TwiML for an answered call: the campaign's script, then hang up (signed)",
             responses={403: {"description": "missing or wrong X-Twilio-Signature"},
                        404: {"description": "no such attempt"}})
async def twilio_voice(attempt_id: int, request: Request, config: ConfigDep) -> Response:
    form = await request.form()
    if not validate_twilio_request(config.auth_token, config.public_url, request.url.path, request.url.query,
                                   _multi_params(form), request.headers.get(SIGNATURE_HEADER)):
        raise HTTPException(403, detail=f"{SIGNATURE_HEADER} is missing or does not match this request")
    script = await run_in_threadpool(_script_for, attempt_id)
    if script is None:
        raise HTTPException(404, detail=f"no attempt {attempt_id}")
    return Response(str(_say_and_hang_up(script)), media_type="application/xml")


def _script_for(attempt_id: int) -> str | None:
    from outbound.models import Attempt, Campaign

    with session_scope(get_engine()) as session:
        attempt = session.get(Attempt, attempt_id)
        if attempt is None:
            return None
        campaign = session.get(Campaign, attempt.campaign_id)
        return campaign.script or campaign.name


def _say_and_hang_up(script: str):
    # The conversation engine (scripts as decision trees) will replace this single <Say>.
    from twilio.twiml.voice_response import VoiceResponse

    response = VoiceResponse()
    response.say(script)
    response.hangup()
    return response
