"""Answering machines: the campaign decides whether to leave a message after the beep or hang up.

Twilio's asynchronous AMD (requested by the adapter with DetectMessageEnd) posts `machine_end_*`
once the greeting has ended, i.e. at the beep. Then:

- `leave_voicemail`: the live call is redirected to `/v1/twilio/voicemail/{attempt}`, which says
  the compliant message (identification, callback number, how to opt out; 47 CFR 64.1200(b)) and
  hangs up; the fact `voicemail_left` is stored;
- `hang_up`: the call is ended at once.

Either way the attempt's outcome is `voicemail` (set by the carrier-event handling), which is
what the campaign's retry policy keys on.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from outbound import audit
from outbound.conversation import call_context, conversation_settings
from outbound.memory import learn, memory_fact_exists
from outbound.models import Attempt, Campaign, Contact
from outbound.scripts.model import FactKind
from outbound.scripts.preamble import voicemail_message

log = logging.getLogger(__name__)

ACTOR = "carrier"
MESSAGE_VERDICTS = frozenset({"machine_end_beep", "machine_end_silence", "machine_end_other"})


@dataclass(frozen=True)
class MachineAnswer:
    action: str                    # leave_voicemail | hang_up | none
    message: str | None = None
    why: str = ""


def machine_answer_action(session: Session, attempt: Attempt, answered_by: str) -> MachineAnswer:
    """What to do now that AMD says `answered_by` on `attempt`'s call."""
    if answered_by not in MESSAGE_VERDICTS:
        return MachineAnswer("none", why=f"{answered_by}: not the end of a machine greeting")
    campaign = session.get(Campaign, attempt.campaign_id)
    settings = conversation_settings(campaign)
    if settings.machine_policy != "leave_voicemail":
        return MachineAnswer("hang_up", why="campaign machine_policy is hang_up")
    context = call_context(campaign, session.get(Contact, attempt.contact_id), settings)
    return MachineAnswer("leave_voicemail", voicemail_message(context), why="campaign machine_policy is leave_voicemail")


def on_machine_answer(session: Session, attempt_id: int, answered_by: str, at: datetime, *, adapter,
                      voicemail_url: str) -> MachineAnswer:
    """Act on an AMD result for a live call: redirect it to the voicemail message, or hang up.
    Call it after the AMD event was stored, once per event (not on a redelivery)."""
    attempt = session.get(Attempt, attempt_id)
    if attempt is None or attempt.carrier_id is None:
        return MachineAnswer("none", why="no such call")
    decision = machine_answer_action(session, attempt, answered_by)
    if decision.action == "none" or adapter is None:
        return decision
    try:
        if decision.action == "hang_up":
            adapter.hang_up(attempt.carrier_id)
        else:
            adapter.redirect(attempt.carrier_id, voicemail_url)
    except Exception as error:  # noqa: BLE001 - a carrier refusal must not lose the AMD event
        log.warning("attempt %s: machine %s not applied: %s", attempt_id, decision.action, error)
        audit.append(session, actor=ACTOR, action="voicemail.action_failed", subject=f"attempt:{attempt_id}",
                     at=at, payload={"action": decision.action, "error": str(error)[:500]})
        session.commit()
        return decision
    audit.append(session, actor=ACTOR, action=f"voicemail.{decision.action}", subject=f"attempt:{attempt_id}",
                 at=at, payload={"answered_by": answered_by, "why": decision.why})
    session.commit()
    return decision


def voicemail_for(session: Session, attempt_id: int, at: datetime) -> str | None:
    """The message to say after the beep (the voicemail URL's TwiML); stores `voicemail_left`.
    None when the campaign does not leave messages (the URL then just hangs up)."""
    attempt = session.get(Attempt, attempt_id)
    if attempt is None:
        raise LookupError(f"no attempt {attempt_id}")
    decision = machine_answer_action(session, attempt, "machine_end_beep")
    if decision.action != "leave_voicemail":
        return None
    contact = session.get(Contact, attempt.contact_id)
    if memory_fact_exists(session, attempt.id, FactKind.VOICEMAIL_LEFT.value):
        return decision.message                 # a redelivered request: said again, stored once
    learn(session, contact=contact, attempt=attempt, kind=FactKind.VOICEMAIL_LEFT.value, value="true", at=at,
          detail=decision.message)
    session.commit()
    return decision.message
