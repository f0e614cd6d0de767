"""A call's conversation: the answer, each reply, and what they change, in one code path.

The Twilio routes (`api/routes/voice.py`) and the simulator (through `telephony.call_requests`)
both call `answer_call` and `on_gather`; the script decides (`outbound.scripts.interpreter`, pure),
this module stores and acts, and an injected `render` turns the step into TwiML (the `outbound`
core does not import `telephony`).

Order on every reply, so nothing is said after an opt-out is known but not stored:

1. the gather is recorded as a carrier event (`carrier_events.handle_webhook`, kind `gather`):
   once per (call, turn), and a spoken opt-out is stored as a revocation there, committed;
2. the script's next step is computed; an opt-out step (key 9, or words that read as one)
   stores its revocation (`consent.records.revoke`, which commits) BEFORE anything is rendered;
3. facts learned are stored and audited, a callback moves the contact's next due time;
4. the TwiML is rendered, stored with the turn, committed and returned. A redelivered request
   gets the stored TwiML back and changes nothing.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from sqlmodel import Session

from consent import records
from consent.ledger_io import RevocationVia
from consent.types import Channel
from outbound import audit
from outbound.callback_times import parse_callback_time
from outbound.campaigns import campaign_settings
from outbound.carrier_events import UnknownCall, handle_webhook
from outbound.conversation_settings import ConversationSettings
from outbound.memory import TurnRecord, learn, memory_view, record_turn, schedule_callback, stored_turn
from outbound.models import Attempt, Campaign, Contact
from outbound.scripts.interpreter import InterpreterError, begin, next_step
from outbound.scripts.loader import ScriptError, load_script
from outbound.scripts.model import Action, ActionKind, FactKind, Gather, Learned, Reply, Step
from outbound.scripts.preamble import CallContext, build_preamble, spell_number, voicemail_message

log = logging.getLogger(__name__)

ACTOR = "carrier"
DEFAULT_ZONE = "America/New_York"
SORRY = "We are sorry, we cannot continue this call right now."


@dataclass(frozen=True)
class Rendering:
    """What a renderer needs: the step, and where the next reply must be posted."""

    attempt_id: int
    next_turn: int
    step: Step
    at: datetime
    callback_number: str | None = None


Render = Callable[[Session, Rendering], str]


class UnknownAttempt(LookupError):
    """No attempt has that id."""


# --- the call is answered --------------------------------------------------------------------------

def answer_call(session: Session, attempt_id: int, at: datetime, *, render: Render) -> str:
    """TwiML for the answer URL: the preamble and the script's first step (turn 0)."""
    attempt, campaign, contact = _call_rows(session, attempt_id)
    previous = stored_turn(session, attempt.id, 0)
    if previous is not None:
        return previous.twiml
    settings = conversation_settings(campaign)
    context = call_context(campaign, contact, settings)
    try:
        step = (_live_answer_step() if _answers_go_to_agents(session, campaign, settings)
                else _first_step(settings, campaign, context, memory_view(session, contact.id)))
    except (ScriptError, InterpreterError) as error:
        step = _broken_script_step(session, attempt, context, error, at)
    return _finish_turn(session, attempt, contact, 0, None, step, None, at, render, context)


def _answers_go_to_agents(session: Session, campaign: Campaign, settings: ConversationSettings) -> bool:
    # A live-voice campaign without a script is a person's call: the answer goes straight to a
    # free agent (warm transfer), where the 2-second abandonment clock starts. Without any agent
    # defined (only allowed for informational calls) it says its text as before.
    from outbound.agents import any_agent_defined

    return (campaign.voice == "live" and settings.script is None and any_agent_defined(session))


def _live_answer_step() -> Step:
    return Step(prompts=(), action=Action(ActionKind.TRANSFER, node="answer"), path=("answer",))


def _first_step(settings: ConversationSettings, campaign: Campaign, context: CallContext,
                memory: dict[str, str]) -> Step:
    if settings.script is None:
        # A voice campaign without a conversation script says its text once, after the preamble.
        text = campaign.script or campaign.name
        return Step(prompts=build_preamble(context).lines() + (text,), path=())
    return begin(load_script(settings.script), memory, context)


# --- a reply was heard -----------------------------------------------------------------------------

def on_gather(session: Session, attempt_id: int, params: dict[str, str], at: datetime, *, turn: int,
              position: Gather, render: Render, adapter=None) -> str:
    """TwiML answering reply number `turn`, heard at `position` (node and tries)."""
    attempt, campaign, contact = _call_rows(session, attempt_id)
    previous = stored_turn(session, attempt.id, turn)
    if previous is not None:
        return previous.twiml
    reply = reply_from(params)
    if not params.get("CallSid"):
        params = {**params, "CallSid": attempt.carrier_id or ""}
    if attempt.carrier_id is None or params["CallSid"] != attempt.carrier_id:
        raise UnknownCall(f"CallSid {params['CallSid']!r} is not the call of attempt {attempt.id}")
    # (1) the carrier event, once; a spoken opt-out is revoked (and committed) in there.
    handle_webhook(session, "gather", {**params, "turn": f"{turn}"}, at, adapter=adapter)
    attempt, campaign, contact = _call_rows(session, attempt_id)
    settings = conversation_settings(campaign)
    context = call_context(campaign, contact, settings)
    try:
        script = load_script(settings.script) if settings.script else None
        step = (next_step(script, memory_view(session, contact.id), context, position, reply) if script
                else Step(prompts=("Thank you. Goodbye.",)))
    except (ScriptError, InterpreterError) as error:
        step = _broken_script_step(session, attempt, context, error, at)
    # (2) an opt-out is on disk before a word is rendered.
    if step.action is not None and step.action.kind is ActionKind.OPT_OUT:
        _revoke(session, attempt, contact, reply, at)
    # (3) facts and their consequences.
    step = _apply_learned(session, attempt, contact, step, reply, at, context)
    return _finish_turn(session, attempt, contact, turn, position.node, step, reply, at, render, context)


def reply_from(params: dict[str, str]) -> Reply:
    confidence = params.get("Confidence")
    try:
        value = float(confidence) if confidence not in (None, "") else None
    except ValueError:
        value = None
    return Reply(speech=(params.get("SpeechResult") or "").strip(), digits=(params.get("Digits") or "").strip(),
                 confidence=value)


def _revoke(session: Session, attempt: Attempt, contact: Contact, reply: Reply, at: datetime) -> None:
    revoke_heard(session, attempt.id, contact.e164, attempt.carrier_id, reply, at, at)


def opt_out_via(reply: Reply) -> RevocationVia:
    """How a reply heard on a call opted out: keys alone are a keypress, anything said is spoken."""
    return RevocationVia.KEYPRESS if reply.digits and not reply.speech else RevocationVia.SPOKEN


def revoke_heard(session: Session, attempt_id: int, phone: str, call_sid: str | None, reply: Reply,
                 received_at: datetime, at: datetime) -> int:
    """Store the opt-out heard on a call (revocation, internal list, audit) and commit; the
    revocation's id. `received_at` is when it was heard: earlier than `at` when it waited in
    `outbound.opt_out_journal` for the database."""
    via = opt_out_via(reply)
    what = f"pressed {reply.digits}" if via is RevocationVia.KEYPRESS else f"said {reply.speech[:300]!r}"
    stored = records.revoke(session, phone, {Channel.VOICE, Channel.SMS}, via, received_at, actor=ACTOR, at=at,
                            audit=audit.append, note=f"call {call_sid}: {what}")
    audit.append(session, actor=ACTOR, action="conversation.opt_out", subject=phone, at=at,
                 payload={"attempt_id": attempt_id, "via": via.value, "revocation_id": stored.row.id})
    session.commit()
    return stored.row.id


def _apply_learned(session: Session, attempt: Attempt, contact: Contact, step: Step, reply: Reply,
                   at: datetime, context: CallContext) -> Step:
    for fact in step.learned:
        learn(session, contact=contact, attempt=attempt, kind=fact.kind, value=fact.value, at=at,
              detail=reply.heard()[:300] or None)
    if step.action is None:
        return step
    if step.action.kind is ActionKind.SCHEDULE_CALLBACK:
        return _callback(session, attempt, contact, step, reply, at)
    if step.action.kind is ActionKind.LEAVE_VOICEMAIL:
        return replace(step, prompts=step.prompts + (voicemail_message(context),))
    return step


def _callback(session: Session, attempt: Attempt, contact: Contact, step: Step, reply: Reply,
              at: datetime) -> Step:
    zone = (contact.timezones.split() or [DEFAULT_ZONE])[0]
    when = parse_callback_time(reply.speech, at, zone)
    learn(session, contact=contact, attempt=attempt, kind=FactKind.CALLBACK_REQUESTED_AT.value,
          value=audit.iso_utc(when.due_at), at=at, detail=when.phrase)
    schedule_callback(session, attempt, when.due_at, at=at, heard=reply.heard())
    prompts = step.prompts or (f"Of course. We will call you back {when.phrase}. Goodbye.",)
    return replace(step, prompts=prompts,
                   learned=step.learned + (Learned(FactKind.CALLBACK_REQUESTED_AT.value, audit.iso_utc(when.due_at)),))


def _broken_script_step(session: Session, attempt: Attempt, context: CallContext, error: Exception,
                        at: datetime) -> Step:
    # Never silence: a script that cannot be used ends the call politely, with the number.
    log.error("attempt %s: script unusable: %s", attempt.id, error)
    audit.append(session, actor=ACTOR, action="conversation.script_error", subject=f"attempt:{attempt.id}",
                 at=at, payload={"error": str(error)[:1000]})
    number = f" You can reach {context.seller} at {spell_number(context.callback_number)}." if context.callback_number else ""
    return Step(prompts=build_preamble(context).lines() + (SORRY + number + " Goodbye.",), path=(),
                action=Action(ActionKind.END, "script_error"))


# --- shared steps ----------------------------------------------------------------------------------

def _finish_turn(session: Session, attempt: Attempt, contact: Contact, turn: int, node: str | None, step: Step,
                 reply: Reply | None, at: datetime, render: Render, context: CallContext) -> str:
    twiml = render(session, Rendering(attempt_id=attempt.id, next_turn=turn + 1, step=step, at=at,
                                      callback_number=context.callback_number))
    record_turn(session, attempt, contact, TurnRecord(
        turn_no=turn, node=node or (step.path[0] if step.path else None), reply=reply, intent=step.intent,
        said=" ".join(step.prompts), action=step.action.kind.value if step.action else None,
        path=step.path, twiml=twiml), at)
    session.commit()
    return twiml


def _call_rows(session: Session, attempt_id: int) -> tuple[Attempt, Campaign, Contact]:
    attempt = session.get(Attempt, attempt_id)
    if attempt is None:
        raise UnknownAttempt(f"no attempt {attempt_id}")
    return attempt, session.get(Campaign, attempt.campaign_id), session.get(Contact, attempt.contact_id)


def conversation_settings(campaign: Campaign) -> ConversationSettings:
    return campaign_settings(campaign).conversation


def call_context(campaign: Campaign, contact: Contact, settings: ConversationSettings | None = None) -> CallContext:
    settings = settings or conversation_settings(campaign)
    states = tuple(contact.states.split()) or ((contact.state,) if contact.state else ())
    # A script is spoken by a synthetic voice whatever the campaign row says (creation refuses
    # live + script; an older row still gets the artificial-voice disclosures and opt-out key).
    voice = "artificial" if settings.script and campaign.voice in (None, "live") else campaign.voice
    # The seller named is the one whose consent let the call through (campaigns.campaign_seller).
    return CallContext(seller=settings.seller_name or campaign.name,
                       callback_number=settings.callback_number or campaign.caller_id,
                       voice=voice, purpose=campaign.purpose, recorded=settings.record_calls,
                       candidate_states=states, first_name=contact.first_name)
