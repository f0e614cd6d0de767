"""What an inbound text asks for: opt out, help, re-subscribe, or something a person must read.

Pure: no database, no clock. The rules come from 47 CFR 64.1200(a)(10) (FCC 24-24) and the CTIA
Messaging Principles (reference/tcpa-rules.md §1.4 and §3.2):

- a reply that is exactly one of the opt-out keywords (the FCC's seven, CTIA's and the carriers'
  additions) is an opt-out;
- any other wording a reasonable person would read as "stop contacting me" is an opt-out too, so
  a short list of phrases errs toward opt-out: a wrong opt-out costs one confirmation text, a
  missed one is a violation for every later call or text;
- HELP/INFO and START/UNSTOP/YES are matched only as the whole message, because "yes" or "info"
  inside a sentence is a conversation, not a command.

Everything else is stored for review by a person.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum


class Intent(StrEnum):
    OPT_OUT = "opt_out"
    HELP = "help"
    START = "start"
    OTHER = "other"              # stored for review


# Whole-message keywords, as they read after `normalise` (so "OPT-OUT" is "optout" and
# "Stop all" is "stop all").
OPT_OUT_KEYWORDS = frozenset({
    "stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit", "revoke",
    "opt out", "optout", "remove",
})
HELP_KEYWORDS = frozenset({"help", "info"})
START_KEYWORDS = frozenset({"start", "unstop", "yes"})

# Phrases that read as an opt-out anywhere in a message ("please stop", "don't text me again",
# "take me off your list", "wrong number"). "stop" and "unsubscribe" alone are enough: nobody
# writes them to a sender they want to hear from. Bare "end", "cancel" and "quit" are not here:
# inside a sentence they are usually about something else ("cancel my appointment"), and such a
# message still goes to review.
_CONTACT_WORDS = r"(?:text|txt|texting|texts|message|messaging|messages|msg|sms|call|calling|calls|contact|contacting|email)"
OPT_OUT_PHRASES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern)) for name, pattern in (
        ("stop", r"\bstop\b"),
        ("unsubscribe", r"\bunsubscribe\b"),
        ("opt out", r"\bopt ?out\b"),
        ("remove me", r"\bremove (?:me|my number|this number)\b"),
        ("take me off", r"\btake (?:me|my number|this number) off\b"),
        ("do not contact", rf"\b(?:dont|do not|never|no longer|quit|cease) (?:ever )?{_CONTACT_WORDS}\b"),
        ("do not want", rf"\b(?:dont|do not) want (?:any |these |those |this |your |more |the )*{_CONTACT_WORDS}\b"),
        ("no more", rf"\bno more {_CONTACT_WORDS}\b"),
        ("leave me alone", r"\bleave me alone\b"),
        ("lose my number", r"\blose (?:my|this) number\b"),
        ("wrong number", r"\bwrong (?:number|person)\b"),
    ))


@dataclass(frozen=True)
class Classification:
    intent: Intent
    matched: str | None          # the keyword or phrase that decided it; None for OTHER
    normalised: str


def normalise(body: str) -> str:
    """Case-folded, punctuation dropped, spaces collapsed: "  Opt-Out! " -> "optout".

    Apostrophes and hyphens vanish rather than become spaces, so "don't" is "dont" and "opt-out"
    is "optout"; any other punctuation becomes a space so "stop.please" stays two words.
    Compatibility normalisation first folds full-width and styled letters to plain ones.
    """
    text = unicodedata.normalize("NFKC", body).casefold()
    text = re.sub(r"['\u2019\u2018`\-\u2010\u2011\u2013\u2014]", "", text)
    text = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text)
    return " ".join(text.split())


def classify(body: str) -> Classification:
    text = normalise(body)
    for keywords, intent in ((OPT_OUT_KEYWORDS, Intent.OPT_OUT), (HELP_KEYWORDS, Intent.HELP),
                             (START_KEYWORDS, Intent.START)):
        if text in keywords:
            return Classification(intent, text, text)
    phrase = opt_out_phrase(text)
    if phrase is not None:
        return Classification(Intent.OPT_OUT, phrase, text)
    return Classification(Intent.OTHER, None, text)


def opt_out_phrase(normalised_text: str) -> str | None:
    """The name of the first opt-out phrase found in already normalised text, else None."""
    for name, pattern in OPT_OUT_PHRASES:
        if pattern.search(normalised_text):
            return name
    return None


# --- the replies ------------------------------------------------------------------------------
# Each is one plain message with no marketing (47 CFR 64.1200(a)(12) allows exactly one
# confirmation, confirming and nothing more). The confirmation names texts and calls because a
# revocation by text is applied to every channel (revoke-all, the conservative reading).

def opt_out_confirmation(brand: str) -> str:
    return (f"You're unsubscribed from {brand} texts and calls. No more messages will be sent. "
            "Reply START to resubscribe.")


def help_reply(brand: str, contact: str) -> str:
    return (f"{brand}: for help contact {contact}. Msg frequency varies. "
            "Msg & data rates may apply. Reply STOP to opt out.")


def resubscribed_reply(brand: str) -> str:
    return (f"{brand}: you're resubscribed to texts. Msg frequency varies. "
            "Msg & data rates may apply. Reply HELP for help, STOP to opt out.")


def already_subscribed_reply(brand: str) -> str:
    return f"{brand}: you're already subscribed to texts. Reply STOP to opt out."


def cannot_resubscribe_reply(brand: str, contact: str) -> str:
    return (f"{brand}: we can't resubscribe you by text without your consent on file. "
            f"To sign up, contact {contact}.")
