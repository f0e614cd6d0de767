"""The simulator's way into the engine: every carrier event, including TwiML fetches.

A real carrier does two things with us: it posts events (status, AMD, texts), and it requests
TwiML URLs (the answer URL, a gather's action, a redirect) and follows what they answer. The
simulator does both through `handle_carrier_event`; kind `twiml` carries the URL it requests in
`Url`, routed here exactly as the HTTP app routes it (`api/routes/voice.py`), to the same
`outbound.conversation` functions. Nothing is faked past the adapter.

After an AMD result is stored, the campaign's machine policy acts on the live call (leave a
voicemail after the beep, or hang up): `outbound.voicemail.on_machine_answer`. The HTTP AMD
receiver must make the same call after storing the event (see that module).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from functools import partial
from urllib.parse import parse_qs, urlsplit

from sqlmodel import Session

from outbound.carrier_events import InvalidEvent, handle_webhook
from outbound.conversation import answer_call, on_gather
from outbound.scripts.model import Gather
from outbound.voicemail import MESSAGE_VERDICTS, on_machine_answer, voicemail_for
from telephony import twiml

log = logging.getLogger(__name__)

TWIML_KIND = "twiml"
DEFAULT_PUBLIC_URL = "http://localhost:8000"
ROUTE = re.compile(r"^/v1/twilio/(voice|gather|voicemail)/(\d+)$")


def handle_carrier_event(session: Session, kind: str, params: dict[str, str], at: datetime, *, adapter=None,
                         public_url: str | None = None) -> str | None:
    """Apply one simulated carrier event; for a TwiML request, the TwiML it answers."""
    base = public_url or DEFAULT_PUBLIC_URL
    if kind == TWIML_KIND:
        return fetch_twiml(session, params, at, adapter=adapter, public_url=base)
    result = handle_webhook(session, kind, params, at, adapter=adapter)
    answered_by = params.get("AnsweredBy", "")
    if kind == "amd" and not result.duplicate and result.attempt_id and answered_by in MESSAGE_VERDICTS:
        on_machine_answer(session, result.attempt_id, answered_by, at, adapter=adapter,
                          voicemail_url=twiml.voicemail_url(base, result.attempt_id))
    return None


# Other modules' TwiML routes (e.g. the warm transfer's /v1/conference/{id}/...): a path regex and
# a handler (session, match, form params, at, adapter=, public_url=) -> TwiML, registered by them.
TwimlHandler = Callable[..., "str | None"]
_extra_routes: list[tuple[re.Pattern[str], TwimlHandler]] = []


def register_twiml_route(pattern: str, handler: TwimlHandler) -> None:
    _extra_routes.append((re.compile(pattern), handler))


def fetch_twiml(session: Session, params: dict[str, str], at: datetime, *, adapter, public_url: str) -> str | None:
    """The TwiML the app answers at `params["Url"]`; None where the app has no such route (a
    real carrier then says its application-error message and hangs up; the simulator hangs up)."""
    url = params.get("Url") or ""
    parts = urlsplit(url)
    match = ROUTE.match(parts.path)
    if match is None:
        form = {name: value for name, value in params.items() if name != "Url"}
        for pattern, handler in _extra_routes:
            extra = pattern.match(parts.path)
            if extra is not None:
                return handler(session, extra, form, at, adapter=adapter, public_url=public_url)
        log.warning("simulated TwiML request for %s: no such route", url)
        return None
    route, attempt_id = match.group(1), int(match.group(2))
    form = {name: value for name, value in params.items() if name != "Url"}
    render = partial(twiml.render, public_url=public_url, adapter=adapter)
    if route == "voice":
        return answer_call(session, attempt_id, at, render=render)
    if route == "voicemail":
        message = voicemail_for(session, attempt_id, at)
        return twiml.voicemail_twiml(message) if message else twiml.step_twiml_hangup()
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    try:
        turn, tries, node = int(query["turn"]), int(query.get("tries", "0")), query["node"]
    except (KeyError, ValueError):
        raise InvalidEvent(f"Url {url!r}: a gather action needs turn, node and tries") from None
    return on_gather(session, attempt_id, form, at, turn=turn, position=Gather(node=node, tries=tries),
                     render=render, adapter=adapter)
