"""TwiML for the conversation, on the Twilio SDK's VoiceResponse.

A step renders as its prompts (<Say>), then:

- a gather: the prompts INSIDE <Gather input="speech dtmf">, so the caller can answer (or press
  the opt-out key) while we are still speaking; `actionOnEmptyResult` makes silence come back
  to us too, so the script's no_input path decides what follows, never silence on the line;
- transfer: the warm-transfer TwiML of `outbound.transfers.begin_transfer` (conference + hold);
- any other action, or none: <Hangup/> after the prompts.
"""
from __future__ import annotations

import logging
import xml.etree.ElementTree as ElementTree
from urllib.parse import urlencode

from sqlmodel import Session
from twilio.twiml.voice_response import Gather as GatherVerb
from twilio.twiml.voice_response import VoiceResponse

from outbound.conversation import Rendering
from outbound.scripts.model import ActionKind, Gather, Step
from outbound.scripts.preamble import spell_number

log = logging.getLogger(__name__)

TWIML_PREFIX = "/v1/twilio"


def gather_url(public_url: str, attempt_id: int, turn: int, gather: Gather) -> str:
    query = urlencode({"turn": turn, "node": gather.node, "tries": gather.tries})
    return f"{public_url.rstrip('/')}{TWIML_PREFIX}/gather/{attempt_id}?{query}"


def voicemail_url(public_url: str, attempt_id: int) -> str:
    return f"{public_url.rstrip('/')}{TWIML_PREFIX}/voicemail/{attempt_id}"


def step_twiml(step: Step, *, attempt_id: int, next_turn: int, public_url: str) -> str:
    """TwiML for every step but a transfer."""
    response = VoiceResponse()
    if step.gather is not None:
        gather = GatherVerb(input=" ".join(_twilio_input(step.gather.input)), action=gather_url(
            public_url, attempt_id, next_turn, step.gather), method="POST", timeout=step.gather.timeout_seconds,
            speech_timeout="auto", num_digits=1, action_on_empty_result=True,
            hints=", ".join(step.gather.hints[:50]) or None)
        for prompt in step.prompts:
            gather.say(prompt)
        response.append(gather)
        return str(response)
    for prompt in step.prompts:
        response.say(prompt)
    response.hangup()
    return str(response)


def render(session: Session, rendering: Rendering, *, public_url: str, adapter=None) -> str:
    step = rendering.step
    if step.action is not None and step.action.kind is ActionKind.TRANSFER and step.gather is None:
        return transfer_twiml(session, rendering, public_url=public_url, adapter=adapter)
    return step_twiml(step, attempt_id=rendering.attempt_id, next_turn=rendering.next_turn, public_url=public_url)


def transfer_twiml(session: Session, rendering: Rendering, *, public_url: str, adapter=None) -> str:
    """The script's last words, then the caller into the warm transfer (helper module
    `outbound.transfers`). Should the transfer not start, the caller hears why and the number to
    call, and the call ends politely: never silence."""
    try:
        from outbound.transfers import TransferError, begin_transfer
    except ImportError:                      # pragma: no cover - the module ships with the engine
        return _transfer_unavailable(rendering, public_url)
    try:
        transfer = begin_transfer(session, attempt_id=rendering.attempt_id, at=rendering.at,
                                  public_url=public_url, adapter=adapter)
    except TransferError as error:
        log.warning("attempt %s: transfer not started: %s", rendering.attempt_id, error)
        return _transfer_unavailable(rendering, public_url)
    return prepend_says(transfer, rendering.step.prompts)


def _transfer_unavailable(rendering: Rendering, public_url: str) -> str:
    number = (f" Please call us at {spell_number(rendering.callback_number)}."
              if rendering.callback_number else "")
    step = Step(prompts=rendering.step.prompts + (
        f"We are sorry, we cannot connect you to a representative right now.{number} Goodbye.",))
    return step_twiml(step, attempt_id=rendering.attempt_id, next_turn=rendering.next_turn, public_url=public_url)


def prepend_says(twiml: str, prompts: tuple[str, ...]) -> str:
    """`twiml` with <Say> verbs for `prompts` first (the script's words before the hand-over)."""
    if not prompts:
        return twiml
    root = ElementTree.fromstring(twiml)
    for index, prompt in enumerate(prompts):
        say = ElementTree.Element("Say")
        say.text = prompt
        root.insert(index, say)
    return '<?xml version="1.0" encoding="UTF-8"?>' + ElementTree.tostring(root, encoding="unicode")


def voicemail_twiml(message: str) -> str:
    response = VoiceResponse()
    response.say(message)
    response.hangup()
    return str(response)


def _twilio_input(kinds: tuple[str, ...]) -> list[str]:
    # Twilio wants "dtmf speech"; the opt-out key must always be heard, so dtmf is always on.
    return sorted(set(kinds) | {"dtmf"})


def step_twiml_hangup() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


INBOUND_CHOICE_PATH = f"{TWIML_PREFIX}/inbound-call/choice"


def inbound_menu_twiml(seller: str | None, public_url: str) -> str:
    """What a caller to our callback number hears: who we are, and 9 to stop every call and text."""
    response = VoiceResponse()
    gather = response.gather(input="dtmf", num_digits=1, timeout=6,
                             action=public_url.rstrip("/") + INBOUND_CHOICE_PATH, action_on_empty_result=True)
    who = f"You have reached {seller}." if seller else "You have reached an automated line."
    gather.say(f"{who} To stop all calls and text messages from us, press 9 now.")
    return str(response)


def inbound_choice_twiml(opted_out: bool, seller: str | None) -> str:
    response = VoiceResponse()
    if opted_out:
        response.say(f"Thank you. {seller or 'We'} will not call or text this number again. Goodbye.")
    else:
        response.say("No change was made. Goodbye.")
    response.hangup()
    return str(response)


def inbound_unidentified_twiml() -> str:
    response = VoiceResponse()
    response.say("We could not identify the number you are calling from, so no change was made. "
                 "Please call again without hiding your number. Goodbye.")
    response.hangup()
    return str(response)
