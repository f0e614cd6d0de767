"""What every call says before its script, built from the campaign; no script can remove it.

Order (47 CFR 64.1200(b); FCC 24-17 for AI voices; tcpa-rules.md §1.6, §2.8):

1. the recording notice, BEFORE anything else, when the call is recorded and any candidate state
   of the contact requires all-party consent (or the state is unknown);
2. for an artificial voice, that the voice is artificial (an AI voice is an "artificial voice");
3. the seller's identification, at the beginning (b)(1);
4. for prerecorded and artificial voices, the key-press opt-out offered at once, within 2 s of
   the identification (b)(3);
5. the callback number, where the rules require one: prerecorded/artificial calls (b)(2) and
   every telemarketing call ((d)(4): a number where the seller can be reached).

The opt-out key itself works at every gather of every call, whatever the script says (see
`interpreter.global_opt_out`).
"""
from __future__ import annotations

from dataclasses import dataclass

from outbound.scripts.model import OPT_OUT_KEY
from outbound.scripts.recording_consent import needs_recording_notice

ROBOT_VOICES = ("prerecorded", "artificial")


@dataclass(frozen=True)
class CallContext:
    """What the preamble and the script's placeholders need to know about this call."""

    seller: str
    callback_number: str | None
    voice: str | None                      # live | prerecorded | artificial
    purpose: str = "telemarketing"
    recorded: bool = False
    candidate_states: tuple[str, ...] = ()
    first_name: str | None = None


@dataclass(frozen=True)
class Preamble:
    recording_notice: str | None
    ai_disclosure: str | None
    identification: str
    opt_out_offer: str | None
    callback_number: str | None

    def lines(self) -> tuple[str, ...]:
        return tuple(line for line in (self.recording_notice, self.ai_disclosure, self.identification,
                                       self.opt_out_offer, self.callback_number) if line)


def build_preamble(context: CallContext) -> Preamble:
    robot = (context.voice or "live") in ROBOT_VOICES
    recording = None
    if context.recorded and needs_recording_notice(context.candidate_states):
        recording = "This call is recorded."
    ai = "You are hearing an artificial, computer-generated voice." if context.voice == "artificial" else None
    identification = f"This is a call from {context.seller}."
    opt_out = (f"To stop calls from {context.seller}, press {OPT_OUT_KEY} or say stop at any time."
               if robot else None)
    callback = None
    if context.callback_number and (robot or context.purpose == "telemarketing"):
        callback = f"You can reach {context.seller} at {spell_number(context.callback_number)}."
    return Preamble(recording, ai, identification, opt_out, callback)


def spell_number(e164: str) -> str:
    """+12125550100 → '2 1 2, 5 5 5, 0 1 0 0': read digit by digit, in the usual groups."""
    digits = e164.removeprefix("+1") if e164.startswith("+1") and len(e164) == 12 else e164.lstrip("+")
    if len(digits) == 10:
        groups = (digits[:3], digits[3:6], digits[6:])
        return ", ".join(" ".join(group) for group in groups)
    return " ".join(digits)


def voicemail_message(context: CallContext) -> str:
    """The message left after the beep: identification, callback number, opt-out instructions
    ((b)(3): a number that reaches the opt-out, since the machine cannot press a key)."""
    number = spell_number(context.callback_number) if context.callback_number else None
    parts = [f"Hello{', ' + context.first_name if context.first_name else ''}, this is a call from {context.seller}."]
    if context.voice == "artificial":
        parts.insert(0, "This message uses an artificial, computer-generated voice.")
    if number:
        parts.append(f"Please call us back at {number}.")
        parts.append(f"To stop calls from {context.seller}, call {number} and press {OPT_OUT_KEY}, "
                     "or tell us to stop.")
    else:
        parts.append(f"To stop calls from {context.seller}, reply STOP to a text from this number.")
    return " ".join(parts)
